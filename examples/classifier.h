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

// The classifier, as plain expressions over named parameters.
struct Classifier {
  dg::ParamList params;
  dg::nn::Conv2d conv1, conv2;
  dg::Param bias1, bias2;
  dg::nn::Linear fc1, fc2;

  explicit Classifier(uint64_t seed)
      : params(seed),
        conv1(params, "conv1", 1, 32, 3,
              {.padding = 1, .bias = false, .init = dg::nn::Init::kaiming_uniform}),
        conv2(params, "conv2", 32, 64, 3,
              {.padding = 1, .bias = false, .init = dg::nn::Init::kaiming_uniform}),
        bias1(params.add("conv1.bias", dg::Tensor::zeros({32}))),
        bias2(params.add("conv2.bias", dg::Tensor::zeros({64}))),
        fc1(params, "fc1", 64 * 7 * 7, 128, {.init = dg::nn::Init::kaiming_uniform}),
        fc2(params, "fc2", 128, 10) {}

  // Normalised images [N,1,28,28] -> conv2's pooled activations and the switches.
  Conv2Activations features(const dg::Var& images) const {
    auto [pooled1, switches1] =
        dg::max_pool2d(dg::relu(dg::bias_add(conv1(images), bias1)), {.kernel_size = 2});
    auto [pooled2, switches2] =
        dg::max_pool2d(dg::relu(dg::bias_add(conv2(pooled1), bias2)), {.kernel_size = 2});
    return {pooled2, switches1, switches2};
  }

  // [N,1,28,28] -> logits [N,10]
  dg::Var operator()(const dg::Var& images) const {
    dg::Var h = dg::relu(dg::bias_add(conv1(images), bias1));  // [N,32,28,28]
    h = dg::max_pool2d(h, {.kernel_size = 2}).values;          // [N,32,14,14]
    h = dg::relu(dg::bias_add(conv2(h), bias2));               // [N,64,14,14]
    h = dg::max_pool2d(h, {.kernel_size = 2}).values;          // [N,64,7,7]
    h = dg::relu(fc1(dg::flatten(h)));                         // [N,128]
    return fc2(h);                                             // [N,10]
  }
};

inline double accuracy(const Classifier& model, const dg::Dataset& data,
                       const dg::Normalization& norm) {
  dg::NoGrad no_grad;
  int64_t correct = 0;
  for (int64_t start = 0; start < data.size(); start += 1000) {
    const dg::Dataset part = data.slice(start, std::min<int64_t>(1000, data.size() - start));
    const dg::Tensor logits = model(dg::normalize(part.images, norm)).value();
    const float* z = logits.data<float>();
    const int64_t* y = part.labels.data<int64_t>();
    for (int64_t n = 0; n < part.size(); ++n)
      correct += std::max_element(z + n * 10, z + n * 10 + 10) - (z + n * 10) == y[n];
  }
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

}  // namespace examples
