// Forward and forward+backward of the convolutional ops on the shapes of issue 7, float32.
// Counters: GFLOP/s for the convolutions (2*MACs; forward+backward counts 3x forward), GB/s
// (bytes read + written once) for the memory-bound ops.
#include <benchmark/benchmark.h>
#include <deltagraph/deltagraph.h>

namespace {

using dg::Tensor;
using dg::Var;

double conv_flops(const dg::Shape& y, int64_t cin_per_group, int64_t kh, int64_t kw) {
  return 2.0 * static_cast<double>(y.product()) * static_cast<double>(cin_per_group * kh * kw);
}

void report(benchmark::State& state, double per_iteration, const char* unit) {
  state.counters[unit] =
      benchmark::Counter(per_iteration * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

struct ConvShape {
  int64_t N, C, H, O, k, s, p;
};

void conv2d_case(benchmark::State& state, ConvShape c, bool backward) {
  Tensor x = Tensor::randn({c.N, c.C, c.H, c.H}, 1);
  dg::Param w(Tensor::randn({c.O, c.C, c.k, c.k}, 2, dg::DType::f32, 0, 0.1));
  dg::Shape y_shape;
  for (auto _ : state) {
    dg::Tape tape;
    Var xv = backward ? dg::variable(x) : dg::input(x);
    Var y = dg::conv2d(xv, w, {.stride = c.s, .padding = c.p});
    y_shape = y.shape();
    if (backward) {
      auto g = dg::grad({y}, {xv, w}, {Var(Tensor::ones(y.shape()))});
      benchmark::DoNotOptimize(g[1].value().raw());
    }
  }
  report(state, conv_flops(y_shape, c.C, c.k, c.k) * (backward ? 3 : 1), "GFLOP/s");
}

void conv_transpose2d_case(benchmark::State& state, ConvShape c, bool backward) {
  Tensor x = Tensor::randn({c.N, c.C, c.H, c.H}, 1);
  dg::Param w(Tensor::randn({c.C, c.O, c.k, c.k}, 2, dg::DType::f32, 0, 0.1));
  double flops = 0;
  for (auto _ : state) {
    dg::Tape tape;
    Var xv = backward ? dg::variable(x) : dg::input(x);
    Var y = dg::conv_transpose2d(xv, w, {.stride = c.s, .padding = c.p});
    flops = 2.0 * static_cast<double>(x.numel()) * static_cast<double>(c.O * c.k * c.k);
    if (backward) {
      auto g = dg::grad({y}, {xv, w}, {Var(Tensor::ones(y.shape()))});
      benchmark::DoNotOptimize(g[1].value().raw());
    }
  }
  report(state, flops * (backward ? 3 : 1), "GFLOP/s");
}

void conv1x1_case(benchmark::State& state, bool backward) {
  Tensor x = Tensor::randn({8, 256, 28, 28}, 1);
  dg::Param w(Tensor::randn({64, 256, 1, 1}, 2, dg::DType::f32, 0, 0.1));
  for (auto _ : state) {
    dg::Tape tape;
    Var xv = backward ? dg::variable(x) : dg::input(x);
    Var y = dg::conv1x1(xv, w);
    if (backward)
      benchmark::DoNotOptimize(
          dg::grad({y}, {xv, w}, {Var(Tensor::ones(y.shape()))})[1].value().raw());
  }
  report(state, 2.0 * 8 * 64 * 28 * 28 * 256 * (backward ? 3 : 1), "GFLOP/s");
}

void pool_unpool_case(benchmark::State& state, bool backward) {
  Tensor x = Tensor::randn({8, 64, 56, 56}, 1);
  for (auto _ : state) {
    dg::Tape tape;
    Var xv = backward ? dg::variable(x) : dg::input(x);
    auto [p, idx] = dg::max_pool2d(xv, {.kernel_size = 2});
    Var up = dg::max_unpool2d(p, idx, {.kernel_size = 2, .output_size = {56, 56}});
    if (backward)
      benchmark::DoNotOptimize(
          dg::grad({up}, {xv}, {Var(Tensor::ones(up.shape()))})[0].value().raw());
  }
  // pool reads x, writes values + int64 indices; unpool reads both, writes the full plane.
  const double plane = 8.0 * 64 * 56 * 56;
  report(state, (plane * 4 + plane / 4 * 12 + plane / 4 * 12 + plane * 4) * (backward ? 2 : 1),
         "GB/s");
}

void bias_case(benchmark::State& state, bool backward) {
  Tensor x = Tensor::randn({8, 64, 56, 56}, 1);
  dg::Param b(Tensor::zeros({64}));
  for (auto _ : state) {
    dg::Tape tape;
    Var xv = backward ? dg::variable(x) : dg::input(x);
    Var y = dg::bias_add(xv, b);
    if (backward)
      benchmark::DoNotOptimize(
          dg::grad({y}, {xv, b}, {Var(Tensor::ones(y.shape()))})[1].value().raw());
  }
  report(state, 8.0 * 64 * 56 * 56 * 8 * (backward ? 2 : 1), "GB/s");
}

void xent_case(benchmark::State& state, dg::Shape logits, bool backward) {
  Tensor z = Tensor::randn(logits, 1);
  dg::Shape label_shape{logits[0]};
  for (int d = 2; d < logits.size(); ++d) label_shape.push_back(logits[d]);
  Tensor labels = Tensor::zeros(label_shape, dg::DType::i64);
  for (auto _ : state) {
    dg::Tape tape;
    Var zv = backward ? dg::variable(z) : dg::input(z);
    Var loss = dg::softmax_xent(zv, labels);
    if (backward) benchmark::DoNotOptimize(dg::grad(loss, {zv})[0].value().raw());
  }
  report(state, static_cast<double>(z.numel()) * 4 * (backward ? 3 : 1), "GB/s");
}

#define CONV(name, ...)                                                       \
  BENCHMARK_CAPTURE(conv2d_case, name##_fwd, ConvShape{__VA_ARGS__}, false)   \
      ->Unit(benchmark::kMillisecond)                                         \
      ->UseRealTime();                                                        \
  BENCHMARK_CAPTURE(conv2d_case, name##_fwdbwd, ConvShape{__VA_ARGS__}, true) \
      ->Unit(benchmark::kMillisecond)                                         \
      ->UseRealTime();
CONV(N8_C64_56_O64_k3_p1, 8, 64, 56, 64, 3, 1, 1)
CONV(N8_C1_28_O32_k5_p2, 8, 1, 28, 32, 5, 1, 2)
CONV(N8_C32_14_O64_k5_p2, 8, 32, 14, 64, 5, 1, 2)
CONV(N32_C3_32_O64_k3_p1, 32, 3, 32, 64, 3, 1, 1)
CONV(N8_C64_28_O128_k3_s2_p1, 8, 64, 28, 128, 3, 2, 1)
#define CONVT(name, ...)                                                                \
  BENCHMARK_CAPTURE(conv_transpose2d_case, name##_fwd, ConvShape{__VA_ARGS__}, false)   \
      ->Unit(benchmark::kMillisecond)                                                   \
      ->UseRealTime();                                                                  \
  BENCHMARK_CAPTURE(conv_transpose2d_case, name##_fwdbwd, ConvShape{__VA_ARGS__}, true) \
      ->Unit(benchmark::kMillisecond)                                                   \
      ->UseRealTime();
CONVT(N8_C64_14_O32_k4_s2_p1, 8, 64, 14, 32, 4, 2, 1)
CONVT(N8_C32_28_O1_k5_p2, 8, 32, 28, 1, 5, 1, 2)
BENCHMARK_CAPTURE(conv1x1_case, N8_C256_28_O64_fwd, false)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(conv1x1_case, N8_C256_28_O64_fwdbwd, true)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(pool_unpool_case, N8_C64_56_k2_fwd, false)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(pool_unpool_case, N8_C64_56_k2_fwdbwd, true)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(bias_case, N8_C64_56_fwd, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(bias_case, N8_C64_56_fwdbwd, true)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(xent_case, N256_C10_fwd, dg::Shape{256, 10}, false)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(xent_case, N256_C10_fwdbwd, dg::Shape{256, 10}, true)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(xent_case, N8_C21_64x64_fwd, dg::Shape{8, 21, 64, 64}, false)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(xent_case, N8_C21_64x64_fwdbwd, dg::Shape{8, 21, 64, 64}, true)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
