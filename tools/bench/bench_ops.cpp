// Forward and forward+backward of the convolutional ops on the shapes of issue 7, and of the
// ops of the newer models (training-mode batch norm, a U-Net decoder's upsample + cat,
// reflection padding, global average pooling), float32.
// Forward cases run the op alone, with nothing recorded (no tape: inference, like PyTorch's
// torch.no_grad); forward+backward cases record the op and ask dg::grad for the gradients of
// every differentiable input, seeded with a cotangent of ones made once, before the timing.
// Counters: GFLOP/s for the convolutions (2*MACs; forward+backward counts 3x forward), GB/s
// (bytes read + written once) for the memory-bound ops. tools/bench-vs-pytorch runs the same
// cases in PyTorch (tools/bench_vs_pytorch.py) by these benchmark names; keep them stable.
#include <benchmark/benchmark.h>
#include <deltagraph/deltagraph.h>

#include <optional>

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

// Runs `op(x)` once per iteration: unrecorded for the forward case; recorded, then
// differentiated with respect to `wrt(x)` (seeded with ones) for the forward+backward case.
// Returns the output's shape.
template <typename Op, typename Wrt>
dg::Shape run(benchmark::State& state, bool backward, const Tensor& x, Op op, Wrt wrt) {
  dg::Shape y_shape = op(dg::input(x)).shape();  // also a warm-up call, outside the timing
  const Tensor ones = Tensor::ones(y_shape);
  for (auto _ : state) {
    std::optional<dg::Tape> tape;
    if (backward) tape.emplace();
    Var xv = backward ? dg::variable(x) : dg::input(x);
    Var y = op(xv);
    if (backward) {
      auto g = dg::grad({y}, wrt(xv), {Var(ones)});
      benchmark::DoNotOptimize(g.back().value().raw());
    } else {
      benchmark::DoNotOptimize(y.value().raw());
    }
  }
  return y_shape;
}

struct ConvShape {
  int64_t N, C, H, O, k, s, p;
};

void conv2d_case(benchmark::State& state, ConvShape c, bool backward) {
  Tensor x = Tensor::randn({c.N, c.C, c.H, c.H}, 1);
  dg::Param w(Tensor::randn({c.O, c.C, c.k, c.k}, 2, dg::DType::f32, 0, 0.1));
  dg::Shape y = run(
      state, backward, x,
      [&](const Var& xv) { return dg::conv2d(xv, w, {.stride = c.s, .padding = c.p}); },
      [&](const Var& xv) {
        return std::vector<Var>{xv, w};
      });
  report(state, conv_flops(y, c.C, c.k, c.k) * (backward ? 3 : 1), "GFLOP/s");
}

void conv_transpose2d_case(benchmark::State& state, ConvShape c, bool backward) {
  Tensor x = Tensor::randn({c.N, c.C, c.H, c.H}, 1);
  dg::Param w(Tensor::randn({c.C, c.O, c.k, c.k}, 2, dg::DType::f32, 0, 0.1));
  run(
      state, backward, x,
      [&](const Var& xv) { return dg::conv_transpose2d(xv, w, {.stride = c.s, .padding = c.p}); },
      [&](const Var& xv) {
        return std::vector<Var>{xv, w};
      });
  const double flops = 2.0 * static_cast<double>(x.numel()) * static_cast<double>(c.O * c.k * c.k);
  report(state, flops * (backward ? 3 : 1), "GFLOP/s");
}

void conv1x1_case(benchmark::State& state, bool backward) {
  Tensor x = Tensor::randn({8, 256, 28, 28}, 1);
  dg::Param w(Tensor::randn({64, 256, 1, 1}, 2, dg::DType::f32, 0, 0.1));
  run(
      state, backward, x, [&](const Var& xv) { return dg::conv1x1(xv, w); },
      [&](const Var& xv) {
        return std::vector<Var>{xv, w};
      });
  report(state, 2.0 * 8 * 64 * 28 * 28 * 256 * (backward ? 3 : 1), "GFLOP/s");
}

// Pooling bytes: x is read (4 B/element), values written (4 B) and int64 indices written (8 B)
// per window; unpooling reads values + indices and writes the full plane.
constexpr double kPlane = 8.0 * 64 * 56 * 56;
constexpr double kPoolBytes = kPlane * 4 + kPlane / 4 * 12;
constexpr double kUnpoolBytes = kPlane / 4 * 12 + kPlane * 4;

void max_pool2d_case(benchmark::State& state, bool backward) {
  Tensor x = Tensor::randn({8, 64, 56, 56}, 1);
  run(
      state, backward, x,
      [&](const Var& xv) { return dg::max_pool2d(xv, {.kernel_size = 2}).values; },
      [&](const Var& xv) { return std::vector<Var>{xv}; });
  report(state, kPoolBytes * (backward ? 2 : 1), "GB/s");
}

void max_unpool2d_case(benchmark::State& state, bool backward) {
  dg::PoolResult pooled = dg::max_pool2d(Tensor::randn({8, 64, 56, 56}, 1), {.kernel_size = 2});
  const Var indices = pooled.indices;
  run(
      state, backward, pooled.values.value(),
      [&](const Var& pv) {
        return dg::max_unpool2d(pv, indices, {.kernel_size = 2, .output_size = {56, 56}});
      },
      [&](const Var& pv) { return std::vector<Var>{pv}; });
  report(state, kUnpoolBytes * (backward ? 2 : 1), "GB/s");
}

void pool_unpool_case(benchmark::State& state, bool backward) {
  Tensor x = Tensor::randn({8, 64, 56, 56}, 1);
  run(
      state, backward, x,
      [&](const Var& xv) {
        auto [p, idx] = dg::max_pool2d(xv, {.kernel_size = 2});
        return dg::max_unpool2d(p, idx, {.kernel_size = 2, .output_size = {56, 56}});
      },
      [&](const Var& xv) { return std::vector<Var>{xv}; });
  report(state, (kPoolBytes + kUnpoolBytes) * (backward ? 2 : 1), "GB/s");
}

void bias_case(benchmark::State& state, bool backward) {
  Tensor x = Tensor::randn({8, 64, 56, 56}, 1);
  dg::Param b(Tensor::zeros({64}));
  run(
      state, backward, x, [&](const Var& xv) { return dg::bias_add(xv, b); },
      [&](const Var& xv) {
        return std::vector<Var>{xv, b};
      });
  report(state, 8.0 * 64 * 56 * 56 * 8 * (backward ? 2 : 1), "GB/s");
}

void xent_case(benchmark::State& state, dg::Shape logits, bool backward) {
  Tensor z = Tensor::randn(logits, 1);
  dg::Shape label_shape{logits[0]};
  for (int d = 2; d < logits.size(); ++d) label_shape.push_back(logits[d]);
  Tensor labels = Tensor::zeros(label_shape, dg::DType::i64);
  run(
      state, backward, z, [&](const Var& zv) { return dg::softmax_xent(zv, labels); },
      [&](const Var& zv) { return std::vector<Var>{zv}; });
  report(state, static_cast<double>(z.numel()) * 4 * (backward ? 3 : 1), "GB/s");
}

// Training-mode batch norm: batch statistics, running buffers updated in place (constants, as
// nn::BatchNorm2d passes them), gradients for x, weight and bias. Bytes: x read and y written
// forward; g and x read, dx written backward.
void batch_norm2d_case(benchmark::State& state, bool backward) {
  Tensor x = Tensor::randn({32, 64, 28, 28}, 1);
  dg::Param weight(Tensor::ones({64})), bias(Tensor::zeros({64}));
  Tensor running_mean = Tensor::zeros({64}), running_var = Tensor::ones({64});
  run(
      state, backward, x,
      [&](const Var& xv) {
        return dg::batch_norm2d(xv, weight, bias, dg::constant(running_mean),
                                dg::constant(running_var), {.training = true});
      },
      [&](const Var& xv) {
        return std::vector<Var>{xv, weight, bias};
      });
  report(state, static_cast<double>(x.numel()) * 4 * (backward ? 5 : 2), "GB/s");
}

// A U-Net decoder step: the low-resolution map upsampled (bilinear, align_corners false) to the
// skip connection's size and joined to it along the channels, [16,64,14,14] + [16,32,28,28] ->
// [16,96,28,28]; the skip connection is a differentiated leaf too. Bytes: both inputs read and
// the output written once (the same again backward).
void upsample_cat_case(benchmark::State& state, bool backward) {
  Tensor low = Tensor::randn({16, 64, 14, 14}, 1);
  const Var skip = dg::variable(Tensor::randn({16, 32, 28, 28}, 2));
  run(
      state, backward, low,
      [&](const Var& lv) {
        return dg::cat({dg::upsample_bilinear2d(lv, {28, 28}), skip}, 1);
      },
      [&](const Var& lv) {
        return std::vector<Var>{lv, skip};
      });
  const double bytes = (16.0 * 64 * 14 * 14 + 16.0 * 32 * 28 * 28 + 16.0 * 96 * 28 * 28) * 4;
  report(state, bytes * (backward ? 2 : 1), "GB/s");
}

// Reflection padding by 1 on every side (left, right, top, bottom), [32,64,28,28] ->
// [32,64,30,30]. Bytes: input read, output written (the reverse backward).
void pad2d_case(benchmark::State& state, bool backward) {
  Tensor x = Tensor::randn({32, 64, 28, 28}, 1);
  run(
      state, backward, x,
      [&](const Var& xv) {
        return dg::pad2d(xv, {.pads = {1, 1, 1, 1}, .mode = "reflect"});
      },
      [&](const Var& xv) { return std::vector<Var>{xv}; });
  report(state, (32.0 * 64 * 28 * 28 + 32.0 * 64 * 30 * 30) * 4 * (backward ? 2 : 1), "GB/s");
}

// Global average pooling, [32,128,7,7] -> [32,128,1,1]. Bytes: input read, output written.
void adaptive_avg_pool2d_case(benchmark::State& state, bool backward) {
  Tensor x = Tensor::randn({32, 128, 7, 7}, 1);
  run(
      state, backward, x,
      [&](const Var& xv) {
        return dg::adaptive_avg_pool2d(xv, {1, 1});
      },
      [&](const Var& xv) { return std::vector<Var>{xv}; });
  report(state, (32.0 * 128 * 7 * 7 + 32.0 * 128) * 4 * (backward ? 2 : 1), "GB/s");
}

#define CASE(fn, name, ...)                               \
  BENCHMARK_CAPTURE(fn, name##_fwd, __VA_ARGS__, false)   \
      ->Unit(benchmark::kMillisecond)                     \
      ->UseRealTime();                                    \
  BENCHMARK_CAPTURE(fn, name##_fwdbwd, __VA_ARGS__, true) \
      ->Unit(benchmark::kMillisecond)                     \
      ->UseRealTime();
#define CONV(name, ...) CASE(conv2d_case, name, ConvShape{__VA_ARGS__})
#define CONVT(name, ...) CASE(conv_transpose2d_case, name, ConvShape{__VA_ARGS__})
#define NOARG_CASE(fn, name)                                                              \
  BENCHMARK_CAPTURE(fn, name##_fwd, false)->Unit(benchmark::kMillisecond)->UseRealTime(); \
  BENCHMARK_CAPTURE(fn, name##_fwdbwd, true)->Unit(benchmark::kMillisecond)->UseRealTime();

CONV(N8_C64_56_O64_k3_p1, 8, 64, 56, 64, 3, 1, 1)
CONV(N8_C1_28_O32_k5_p2, 8, 1, 28, 32, 5, 1, 2)
CONV(N8_C32_14_O64_k5_p2, 8, 32, 14, 64, 5, 1, 2)
CONV(N32_C3_32_O64_k3_p1, 32, 3, 32, 64, 3, 1, 1)
CONV(N8_C64_28_O128_k3_s2_p1, 8, 64, 28, 128, 3, 2, 1)
CONVT(N8_C64_14_O32_k4_s2_p1, 8, 64, 14, 32, 4, 2, 1)
CONVT(N8_C32_28_O1_k5_p2, 8, 32, 28, 1, 5, 1, 2)
NOARG_CASE(conv1x1_case, N8_C256_28_O64)
NOARG_CASE(max_pool2d_case, N8_C64_56_k2)
NOARG_CASE(max_unpool2d_case, N8_C64_56_k2)
NOARG_CASE(pool_unpool_case, N8_C64_56_k2)
NOARG_CASE(bias_case, N8_C64_56)
CASE(xent_case, N256_C10, dg::Shape{256, 10})
CASE(xent_case, N8_C21_64x64, dg::Shape{8, 21, 64, 64})
NOARG_CASE(batch_norm2d_case, N32_C64_28)
NOARG_CASE(upsample_cat_case, N16_C64_14_skip_C32_28)
NOARG_CASE(pad2d_case, N32_C64_28_reflect_p1)
NOARG_CASE(adaptive_avg_pool2d_case, N32_C128_7_1x1)

}  // namespace

BENCHMARK_MAIN();
