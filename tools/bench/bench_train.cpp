// Whole training steps (zero_grad, forward, backward, optimiser step), float32: the two of issue
// 7 (dg::SGD, lr 0.01) and the Fashion-MNIST classifier's (dg::Adam):
//   LeNet-like: conv 1->32 k5 p2, relu, maxpool 2, conv 32->64 k5 p2, relu, maxpool 2,
//               fc 3136->1024, relu, fc 1024->10, softmax-cross-entropy, batch 64 (biases
//               everywhere); threads: the default (all cores, or OMP_NUM_THREADS)
//   classifier: examples/classifier.h in training mode: conv 1->32 k3 p1, batch norm, relu,
//               maxpool 2, conv 32->64 k3 p1, batch norm, relu, maxpool 2, conv 64->128 k3 p1,
//               batch norm, relu, maxpool 2, dropout 0.25, fc 1152->256, relu, dropout 0.25,
//               fc 256->10 (no conv biases), softmax-cross-entropy with label smoothing 0.1,
//               Adam (lr 3e-3, as examples/fashion_mnist), batch 128; threads: the default
//   tiny:       conv 1->8 k3 s2 p1, relu, conv 8->16 k3 s2 p1, relu, fc 784->10,
//               softmax-cross-entropy, batch 32 (no biases); 1 thread
// tools/bench_vs_pytorch.py builds the same three steps in PyTorch; keep them in step.
// Counters: images/s and GFLOP/s (2*MACs of the convolutions and fully connected layers:
// forward, weight gradients, and input gradients of every layer but the first).
#include <benchmark/benchmark.h>
#include <deltagraph/deltagraph.h>

#include "classifier.h"

namespace {

dg::Param weight(dg::Shape shape, uint64_t seed) {
  const double fan_in = static_cast<double>(shape.product() / shape[0]);
  return dg::Param(dg::Tensor::randn(shape, seed, dg::DType::f32, 0, std::sqrt(2.0 / fan_in)));
}

// 2*MACs of a layer's forward: output elements times inputs per output.
double macs2(double outputs, double fan_in) { return 2.0 * outputs * fan_in; }

void report_flops(benchmark::State& state, double first_layer, double other_layers) {
  // backward: weight gradients of every layer, input gradients of all but the first.
  const double per_step = 2 * first_layer + 3 * other_layers;
  state.counters["GFLOP/s"] =
      benchmark::Counter(per_step * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void BM_LeNetStep(benchmark::State& state) {
  const int64_t N = 64;
  dg::Param w1 = weight({32, 1, 5, 5}, 1), b1(dg::Tensor::zeros({32})),
            w2 = weight({64, 32, 5, 5}, 2), b2(dg::Tensor::zeros({64})),
            w3 = weight({1024, 3136}, 3), b3(dg::Tensor::zeros({1024})), w4 = weight({10, 1024}, 4),
            b4(dg::Tensor::zeros({10}));
  dg::Tensor images = dg::Tensor::uniform({N, 1, 28, 28}, 5);
  std::vector<int64_t> label_values(N);
  for (int64_t i = 0; i < N; ++i) label_values[i] = i % 10;
  dg::Tensor labels = dg::Tensor::from(label_values, {N});
  dg::SGD optimizer({w1, b1, w2, b2, w3, b3, w4, b4}, {.lr = 0.01});
  for (auto _ : state) {
    dg::Tape tape;
    optimizer.zero_grad();
    dg::Var h = dg::relu(dg::conv2d(images, w1, b1, {.padding = 2}));
    h = dg::max_pool2d(h, {.kernel_size = 2}).values;
    h = dg::relu(dg::conv2d(h, w2, b2, {.padding = 2}));
    h = dg::max_pool2d(h, {.kernel_size = 2}).values;
    h = dg::relu(dg::linear(dg::flatten(h), w3, b3));
    dg::Var loss = dg::softmax_xent(dg::linear(h, w4, b4), labels);
    dg::backward(loss);
    optimizer.step();
  }
  state.SetItemsProcessed(state.iterations() * N);
  report_flops(state, macs2(N * 32 * 28 * 28, 1 * 25),
               macs2(N * 64 * 14 * 14, 32 * 25) + macs2(N * 1024, 3136) + macs2(N * 10, 1024));
}
BENCHMARK(BM_LeNetStep)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ClassifierStep(benchmark::State& state) {
  const int64_t N = 128;
  examples::Classifier model(1);
  model.params.train();  // batch statistics and dropout, as while training
  dg::Tensor images = dg::Tensor::uniform({N, 1, 28, 28}, 5);
  std::vector<int64_t> label_values(N);
  for (int64_t i = 0; i < N; ++i) label_values[i] = i % 10;
  dg::Tensor labels = dg::Tensor::from(label_values, {N});
  dg::Adam optimizer(model.params, {.lr = 3e-3});
  for (auto _ : state) {
    dg::Tape tape;
    optimizer.zero_grad();
    dg::Var loss = dg::softmax_xent(model(images), labels, {.label_smoothing = 0.1});
    dg::backward(loss);
    optimizer.step();
  }
  state.SetItemsProcessed(state.iterations() * N);
  report_flops(state, macs2(N * 32 * 28 * 28, 1 * 9),
               macs2(N * 64 * 14 * 14, 32 * 9) + macs2(N * 128 * 7 * 7, 64 * 9) +
                   macs2(N * 256, 1152) + macs2(N * 10, 256));
}
BENCHMARK(BM_ClassifierStep)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_TinyStep(benchmark::State& state) {
  const int previous_threads = dg::num_threads();
  dg::set_num_threads(1);
  const int64_t N = 32;
  dg::Param w1 = weight({8, 1, 3, 3}, 1), w2 = weight({16, 8, 3, 3}, 2), w3 = weight({10, 784}, 3);
  dg::Tensor images = dg::Tensor::uniform({N, 1, 28, 28}, 5);
  std::vector<int64_t> label_values(N);
  for (int64_t i = 0; i < N; ++i) label_values[i] = i % 10;
  dg::Tensor labels = dg::Tensor::from(label_values, {N});
  dg::SGD optimizer({w1, w2, w3}, {.lr = 0.01});
  for (auto _ : state) {
    dg::Tape tape;
    optimizer.zero_grad();
    dg::Var h = dg::relu(dg::conv2d(images, w1, {.stride = 2, .padding = 1}));
    h = dg::relu(dg::conv2d(h, w2, {.stride = 2, .padding = 1}));
    dg::Var loss = dg::softmax_xent(dg::linear(dg::flatten(h), w3), labels);
    dg::backward(loss);
    optimizer.step();
  }
  state.SetItemsProcessed(state.iterations() * N);
  report_flops(state, macs2(N * 8 * 14 * 14, 9), macs2(N * 16 * 7 * 7, 8 * 9) + macs2(N * 10, 784));
  dg::set_num_threads(previous_threads);
}
BENCHMARK(BM_TinyStep)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
