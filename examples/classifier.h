// The Fashion-MNIST classifier shared by the examples: fashion_mnist trains it, deconvnet loads
// its checkpoint (so both must agree parameter for parameter), and both measure its accuracy.
#pragma once

#include <deltagraph/deltagraph.h>

#include <algorithm>
#include <cstdint>

namespace examples {

// What the deconvnet needs from a forward pass: the pooled conv2 activations and both layers'
// switches.
struct Conv2Activations {
  dg::Var pooled2;    // [N,64,7,7]
  dg::Var switches1;  // int64 [N,32,14,14], flat positions in the 28x28 conv1 maps
  dg::Var switches2;  // int64 [N,64,7,7], flat positions in the 14x14 conv2 maps
};

// The classifier, as plain expressions over named parameters: three blocks of convolution,
// 2x2 max-pool, batch norm and ReLU, then dropout and two fully connected layers. Pooling comes
// right after the convolution, so batch norm and ReLU work on planes a quarter the size (a
// quarter of their time and memory); with batch norm's scale positive the max commutes with
// both. Batch norm and dropout follow params' mode: params.train() while training,
// params.eval() to measure.
struct Classifier {
  dg::ParamList params;
  dg::nn::Conv2d conv1, conv2, conv3;
  dg::nn::BatchNorm2d bn1, bn2, bn3;
  dg::nn::Linear fc1, fc2;
  dg::nn::Dropout drop1, drop2;

  explicit Classifier(uint64_t seed)
      : params(seed),
        // No conv biases: batch norm's own bias replaces them.
        conv1(params, "conv1", 1, 32, 3,
              {.padding = 1, .bias = false, .init = dg::nn::Init::kaiming_uniform}),
        conv2(params, "conv2", 32, 64, 3,
              {.padding = 1, .bias = false, .init = dg::nn::Init::kaiming_uniform}),
        conv3(params, "conv3", 64, 128, 3,
              {.padding = 1, .bias = false, .init = dg::nn::Init::kaiming_uniform}),
        bn1(params, "bn1", 32),
        bn2(params, "bn2", 64),
        bn3(params, "bn3", 128),
        fc1(params, "fc1", 128 * 3 * 3, 256, {.init = dg::nn::Init::kaiming_uniform}),
        fc2(params, "fc2", 256, 10),
        drop1(params, "drop1", 0.25),
        drop2(params, "drop2", 0.25) {}

  // Normalised images [N,1,28,28] -> block 2's activations and both blocks' switches (where
  // each pooled maximum of conv1's and conv2's maps was).
  Conv2Activations features(const dg::Var& images) const {
    auto [pooled1, switches1] = dg::max_pool2d(conv1(images), {.kernel_size = 2});
    auto [pooled2, switches2] = dg::max_pool2d(conv2(dg::relu(bn1(pooled1))), {.kernel_size = 2});
    return {dg::relu(bn2(pooled2)), switches1, switches2};
  }

  // [N,1,28,28] -> logits [N,10]
  dg::Var operator()(const dg::Var& images) const {
    dg::Var h = dg::max_pool2d(conv1(images), {.kernel_size = 2}).values;  // [N,32,14,14]
    h = dg::relu(bn1(h));
    h = dg::max_pool2d(conv2(h), {.kernel_size = 2}).values;  // [N,64,7,7]
    h = dg::relu(bn2(h));
    h = dg::max_pool2d(conv3(h), {.kernel_size = 2}).values;  // [N,128,3,3]
    h = dg::relu(bn3(h));
    h = dg::relu(fc1(drop1(dg::flatten(h))));  // [N,256]
    return fc2(drop2(h));                      // [N,10]
  }
};

inline double accuracy(const Classifier& model, const dg::Dataset& data,
                       const dg::Normalization& norm) {
  dg::NoGrad no_grad;
  dg::ParamList params = model.params;  // a copy shares the mode
  const bool was_training = params.training();
  params.eval();
  int64_t correct = 0;
  // 128 images at a time, as many as a training batch: the activations of a larger chunk would
  // dominate peak memory, and buffers of the training batch's sizes are reused.
  for (int64_t start = 0; start < data.size(); start += 128) {
    const dg::Dataset part = data.slice(start, std::min<int64_t>(128, data.size() - start));
    const dg::Tensor logits = model(dg::normalize(part.images, norm)).value();
    const float* z = logits.data<float>();
    const int64_t* y = part.labels.data<int64_t>();
    for (int64_t n = 0; n < part.size(); ++n)
      correct += std::max_element(z + n * 10, z + n * 10 + 10) - (z + n * 10) == y[n];
  }
  params.train(was_training);
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

}  // namespace examples
