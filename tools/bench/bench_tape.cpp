// Tape overhead: a chain of scalar-sized ops, recorded and differentiated.
#include <benchmark/benchmark.h>
#include <deltagraph/deltagraph.h>

static void BM_ScalarChainForwardBackward(benchmark::State& state) {
  const int64_t ops = state.range(0);
  dg::Param x(dg::Tensor::full({1}, 0.5, dg::DType::f32));
  for (auto _ : state) {
    dg::Tape tape;
    dg::Var y = x;
    for (int64_t i = 0; i < ops; ++i) y = dg::mul_scalar(y, 1.0000001);
    auto g = dg::grad(dg::sum(y), {x});
    benchmark::DoNotOptimize(g[0].value().raw());
  }
  state.counters["ns_per_op"] =
      benchmark::Counter(static_cast<double>(ops) * state.iterations(),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(state.iterations() * ops);
}
BENCHMARK(BM_ScalarChainForwardBackward)->Arg(100000)->Unit(benchmark::kMillisecond);

// Recording alone: the forward chain on a tape, no backward pass.
static void BM_ScalarChainRecordOnly(benchmark::State& state) {
  const int64_t ops = state.range(0);
  dg::Param x(dg::Tensor::full({1}, 0.5, dg::DType::f32));
  for (auto _ : state) {
    dg::Tape tape;
    dg::Var y = x;
    for (int64_t i = 0; i < ops; ++i) y = dg::mul_scalar(y, 1.0000001);
    benchmark::DoNotOptimize(y.value().raw());
  }
  state.counters["ns_per_op"] =
      benchmark::Counter(static_cast<double>(ops) * state.iterations(),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ScalarChainRecordOnly)->Arg(100000)->Unit(benchmark::kMillisecond);

// The same chain with nothing recorded (no tape): the cost of the kernels and the call path.
static void BM_ScalarChainUnrecorded(benchmark::State& state) {
  const int64_t ops = state.range(0);
  dg::Var x = dg::constant(dg::Tensor::full({1}, 0.5, dg::DType::f32));
  for (auto _ : state) {
    dg::Var y = x;
    for (int64_t i = 0; i < ops; ++i) y = dg::mul_scalar(y, 1.0000001);
    benchmark::DoNotOptimize(y.value().raw());
  }
  state.counters["ns_per_op"] =
      benchmark::Counter(static_cast<double>(ops) * state.iterations(),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_ScalarChainUnrecorded)->Arg(100000)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
