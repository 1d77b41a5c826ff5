// DOT export of a large recorded graph: a network of 10,000 ops (conv-sized blocks of small
// tensors, named scopes, parameters, pooling with indices) turned into DOT text.
#include <benchmark/benchmark.h>
#include <deltagraph/deltagraph.h>

#include <memory>
#include <vector>

namespace {

// Records `ops` ops: repeated blocks of conv2d, bias_add, relu and an add, each block in its
// own scope with its own parameters, ending in a max_pool2d/max_unpool2d pair every 8 blocks.
struct LargeGraph {
  std::vector<std::unique_ptr<dg::Param>> params;
  dg::Tape tape;
  dg::Var output;
  int64_t recorded = 0;

  explicit LargeGraph(int64_t ops) {
    dg::Var x = dg::input(dg::Tensor::randn({1, 2, 4, 4}, 1), "image");
    for (int64_t block = 0; tape.size() < static_cast<uint64_t>(ops); ++block) {
      dg::Scope stage(fmt::format("stage{}", block / 8));
      dg::Scope scope(fmt::format("block{}", block % 8));
      // Pointers, not references into the vector: the next emplace_back may move its slots.
      const dg::Param* w = params
                               .emplace_back(std::make_unique<dg::Param>(
                                   dg::Tensor::randn({2, 2, 3, 3}, static_cast<uint64_t>(block),
                                                     dg::DType::f32, 0, 0.3),
                                   fmt::format("block{}.weight", block)))
                               .get();
      const dg::Param* b = params
                               .emplace_back(std::make_unique<dg::Param>(
                                   dg::Tensor::zeros({2}), fmt::format("block{}.bias", block)))
                               .get();
      dg::Var h = dg::relu(dg::bias_add(dg::conv2d(x, *w, {.padding = 1}), *b));
      x = x + h;
      if (block % 8 == 7) {
        auto [pooled, where] = dg::max_pool2d(x, {.kernel_size = 2});
        x = dg::max_unpool2d(pooled, where, {.kernel_size = 2, .output_size = {4, 4}});
      }
    }
    output = dg::sum(x).named("loss");
    recorded = static_cast<int64_t>(tape.size());
  }
};

void BM_ToDot(benchmark::State& state, dg::DotOptions options) {
  LargeGraph graph(state.range(0));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = dg::to_dot({graph.output}, options);
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["ops"] = static_cast<double>(graph.recorded);
  state.counters["dot_bytes"] = static_cast<double>(bytes);
  state.counters["ns_per_op"] =
      benchmark::Counter(static_cast<double>(graph.recorded) * state.iterations(),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

}  // namespace

BENCHMARK_CAPTURE(BM_ToDot, clusters, dg::DotOptions{})->Arg(10000)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ToDot, stats, dg::DotOptions{.stats = true})
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ToDot, collapsed, dg::DotOptions{.collapse = {"stage0", "stage1", "stage2"}})
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
