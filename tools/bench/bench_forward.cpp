// Forward mode and the transforms on a small CNN (float32, batch 16, 3x32x32, conv 3->16 3x3 ->
// relu -> max-pool 2 -> conv 16->10 "same" -> global mean -> softmax_xent), differentiated with
// respect to the first convolution's weights:
//   BM_Vjp            the gradient (reverse mode: forward + backward)
//   BM_Jvp/rules      J t by forward mode, each op by its own JVP rule
//   BM_Jvp/transposed J t with every op through the transposed VJP (no rules)
//   BM_Hvp            H t, forward over reverse
// tools/bench-vs-pytorch prints BM_Hvp beside torch.autograd.functional.hvp.
//   BM_DeepStack/...  a training step's forward and backward through 24 conv3x3 + relu layers
//                     (64 channels, 32x32, batch 16, float32): plainly, in round(sqrt(24)) = 5
//                     checkpointed segments, and in 7 (sqrt of the 48 ops); counter peak_MB is the
//                     step's peak tensor memory above what was live before it (memory_stats).
//                     docs/autodiff.md has the numbers (goal of issue 17: 3x lower, <= 1.4x time).
#include <benchmark/benchmark.h>
#include <deltagraph/deltagraph.h>

#include <functional>
#include <string>
#include <vector>

namespace {

struct SmallCnn {
  dg::Tensor x = dg::Tensor::randn({16, 3, 32, 32}, 1);
  dg::Tensor w2 = dg::mul_scalar(dg::Tensor::randn({10, 16, 3, 3}, 2), 0.1).value();
  dg::Tensor labels = dg::Tensor::zeros({16}, dg::DType::i64);
  dg::Tensor w1 = dg::mul_scalar(dg::Tensor::randn({16, 3, 3, 3}, 3), 0.2).value();
  dg::Tensor t = dg::Tensor::randn({16, 3, 3, 3}, 4);
  dg::Var operator()(const dg::Var& w) const {
    dg::Var h = dg::relu(dg::conv2d(x, w, {.padding = 1}));
    h = dg::max_pool2d(h, {.kernel_size = 2}).values;
    h = dg::conv2d(h, w2, {.padding = "same"});
    return dg::softmax_xent(dg::mean(h, {.axes = {2, 3}}), labels);
  }
};

void BM_Vjp(benchmark::State& state) {
  const SmallCnn net;
  for (auto _ : state) {
    dg::Tape tape;
    dg::Var w = dg::variable(net.w1);
    benchmark::DoNotOptimize(dg::grad(net(w), {w})[0].value().raw());
  }
}
BENCHMARK(BM_Vjp)->Unit(benchmark::kMillisecond);

void BM_Jvp(benchmark::State& state, bool rules) {
  const SmallCnn net;
  const auto f = [&](const std::vector<dg::Var>& in) { return std::vector<dg::Var>{net(in[0])}; };
  for (auto _ : state)
    benchmark::DoNotOptimize(dg::jvp(f, {net.w1}, {net.t}, rules).tangents[0].value().raw());
}
BENCHMARK_CAPTURE(BM_Jvp, rules, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Jvp, transposed, false)->Unit(benchmark::kMillisecond);

void BM_Hvp(benchmark::State& state) {
  const SmallCnn net;
  for (auto _ : state) benchmark::DoNotOptimize(dg::hvp(net, net.w1, net.t).raw());
}
BENCHMARK(BM_Hvp)->Unit(benchmark::kMillisecond);

void BM_DeepStack(benchmark::State& state, int segments) {
  dg::ParamList params(1);
  std::vector<dg::nn::Conv2d> convs;
  convs.reserve(24);
  for (int i = 0; i < 24; ++i)
    convs.emplace_back(params, "conv" + std::to_string(i), 64, 64, 3,
                       dg::nn::Conv2dLayerOptions{.padding = 1, .bias = false});
  std::vector<std::function<dg::Var(const dg::Var&)>> layers;
  for (const dg::nn::Conv2d& conv : convs)
    layers.push_back([&conv](const dg::Var& h) { return dg::relu(conv(h)); });
  const dg::Tensor x = dg::Tensor::randn({16, 64, 32, 32}, 2);
  double peak = 0;
  for (auto _ : state) {
    params.zero_grad();
    dg::reset_peak_memory();
    const int64_t before = dg::memory_stats().live_bytes;
    {
      dg::Tape tape;
      dg::Var h = x;
      if (segments >= 0) {
        h = dg::checkpoint_sequential(layers, h, segments);
      } else {
        for (const auto& f : layers) h = f(h);
      }
      dg::backward(dg::mean(h));
    }
    peak = static_cast<double>(dg::memory_stats().peak_bytes - before) / 1e6;
  }
  state.counters["peak_MB"] = peak;
}
BENCHMARK_CAPTURE(BM_DeepStack, plain, -1)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_CAPTURE(BM_DeepStack, checkpoint_sqrt_n, 0)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_CAPTURE(BM_DeepStack, checkpoint_7, 7)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

BENCHMARK_MAIN();
