// Rematerialisation (dg::checkpoint, dg::checkpoint_sequential) and tensor memory accounting
// (dg::memory_stats).
#include <gtest/gtest.h>

#include <cstring>

#include "deltagraph/deltagraph.h"
#include "test_util.h"

namespace dg {
namespace {

using test::f64;

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// conv3x3 -> relu layers (with a dropout in the middle: the replay must draw the same mask).
struct Chain {
  ParamList params{7};
  std::vector<nn::Conv2d> convs;
  nn::Dropout drop{params, "drop", 0.3};
  Chain(int layers, int64_t channels, DType dtype) {
    convs.reserve(layers);
    for (int i = 0; i < layers; ++i)
      convs.emplace_back(params, "conv" + std::to_string(i), i == 0 ? 2 : channels, channels, 3,
                         nn::Conv2dLayerOptions{.padding = 1, .dtype = dtype});
  }
  std::vector<std::function<Var(const Var&)>> layers() const {
    std::vector<std::function<Var(const Var&)>> out;
    for (size_t i = 0; i < convs.size(); ++i)
      out.push_back([this, i](const Var& h) {
        Var y = relu(convs[i](h));
        return i == convs.size() / 2 ? drop(y) : y;
      });
    return out;
  }
};

// The loss of a fresh chain (the same initial values and dropout seeds every time), plainly
// (segments < 0) or in checkpointed segments (0: sqrt(n)); the parameters' gradients.
std::vector<Tensor> chain_gradients(int depth, int64_t channels, DType dtype, const Tensor& x,
                                    int segments) {
  const Chain chain(depth, channels, dtype);
  {
    Tape tape;
    const auto layers = chain.layers();
    Var h = segments < 0 ? [&] {
      Var v = x;
      for (const auto& f : layers) v = f(v);
      return v;
    }()
                          : checkpoint_sequential(layers, x, segments);
    backward(sum(mul(h, h)));
  }
  std::vector<Tensor> grads;
  for (const Param& p : chain.params.params()) grads.push_back(p.grad().clone());
  return grads;
}

TEST(Checkpoint, GradientsAreBitwiseThoseWithoutCheckpointing) {
  const Tensor x = test::rand64({2, 2, 6, 5}, 1);
  const std::vector<Tensor> plain = chain_gradients(7, 4, DType::f64, x, -1);
  for (int segments : {2, 3, 0 /* 0: round(sqrt(7)) = 3 */}) {
    const std::vector<Tensor> remat = chain_gradients(7, 4, DType::f64, x, segments);
    ASSERT_EQ(remat.size(), plain.size());
    for (size_t i = 0; i < plain.size(); ++i)
      EXPECT_TRUE(same_bits(remat[i], plain[i]))
          << "parameter " << i << ", " << segments << " segments";
  }
}

TEST(Checkpoint, OneSegmentWithInputsParametersAndConstants) {
  const Tensor a = test::rand64({3, 4}, 2), b = test::rand64({4}, 3);
  Param w(test::rand64({4, 4}, 4), "w");
  auto segment = [&](const std::vector<Var>& in) {
    return tanh(add(matmul(in[0], w), mul(in[1], Var(f64({2}, {1})))));
  };
  auto run = [&](bool remat) {
    w.zero_grad();
    Tape tape;
    Var av = variable(a), bv = variable(b);
    Var y = remat ? checkpoint(segment, {av, bv}) : segment({av, bv});
    auto g = grad({sum(mul(y, y))}, {av, bv, w});
    return std::vector<Tensor>{y.value(), g[0].value(), g[1].value(), g[2].value()};
  };
  const auto plain = run(false), remat = run(true);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_TRUE(same_bits(plain[i], remat[i])) << i;
  // A segment that returns its input records nothing: the input comes back.
  Tape tape;
  Var av = variable(a);
  EXPECT_EQ(checkpoint([](const std::vector<Var>& in) { return in[0]; }, {av}), av);
}

// Second derivatives and forward mode go through the checkpoint node (its VJP replays the
// segment with recording on; forward mode transposes that VJP).
TEST(Checkpoint, SecondDerivativesAndForwardModeGoThroughIt) {
  auto f = [](const Var& x) { return sum(mul(mul(x, x), x)); };  // H = diag(6x)
  auto remat_f = [&](const Var& x) {
    return checkpoint([&](const std::vector<Var>& in) { return f(in[0]); }, {x});
  };
  const Tensor x = f64({1, 2, -1}, {3}), v = f64({1, 1, 2}, {3});
  EXPECT_TRUE(allclose(hvp(remat_f, x, v), hvp(f, x, v), 0, 0));
  EXPECT_TRUE(test::ValuesNear(hvp(remat_f, x, v), {3}, {6, 12, -12}));
  auto g = [](const std::vector<Var>& in) { return std::vector<Var>{tanh(mul(in[0], in[0]))}; };
  auto remat_g = [&](const std::vector<Var>& in) {
    return std::vector<Var>{checkpoint([&](const std::vector<Var>& i) { return g(i)[0]; }, in)};
  };
  EXPECT_TRUE(allclose(jvp(remat_g, {x}, {v}).tangents[0].value(),
                       jvp(g, {x}, {v}).tangents[0].value(), 1e-15, 0));
}

// The point of it: a deep chain's peak tensor memory during a training step (24 layers: the
// activations of 24 layers against those of the 5 segments' ends and of one segment).
TEST(Checkpoint, CutsThePeakMemoryOfADeepChain) {
  const Tensor x = Tensor::randn({4, 2, 32, 32}, 5);
  auto peak = [&](int segments) {
    reset_peak_memory();
    const int64_t before = memory_stats().live_bytes;
    chain_gradients(24, 8, DType::f32, x, segments);
    return memory_stats().peak_bytes - before;
  };
  const int64_t plain = peak(-1), remat = peak(0);
  EXPECT_LT(remat * 2, plain) << "plain " << plain << " bytes, sqrt(24) segments " << remat;
}

// Segment j is replayed while the values entering segments 1..j are held, so later segments
// are shorter: 24 layers in round(sqrt(24)) = 5 segments of 6, 5, 5, 4 and 4 layers, the last
// one kept (never replayed). The replays come last segment first.
// A replay runs the segment's recorded ops, not the layer functions: each layer is an op that
// notes its number when it runs.
std::vector<int64_t> layers_run;

const OpDef& numbered_layer_op() {
  static const OpDef& op = register_op({
      .name = "test_numbered_layer",
      .summary = "y = 1.5 x; notes its attribute i when it runs (rematerialisation tests)",
      .inputs = {{"x"}},
      .attrs = {{"i", AttrType::integer, AttrValue(int64_t{0}), "the layer's number"}},
      .shape = [](const OpCall& c) { return same_as_input(c); },
      .forward =
          [](const OpCall& c, std::span<const TensorSpec>) {
            layers_run.push_back(c.attrs.integer("i"));
            return std::vector<Tensor>{mul_scalar(c.input(0), 1.5).value()};
          },
      .vjp =
          [](const VjpContext& c) { return std::vector<Var>{mul_scalar(c.grad_output(0), 1.5)}; },
      .vjp_formula = "dx = 1.5 g",
      .vjp_reads_outputs = false,
  });
  return op;
}

TEST(Checkpoint, SequentialSegmentsShrinkTowardsTheOutput) {
  std::vector<int64_t>& calls = layers_run;
  std::vector<std::function<Var(const Var&)>> layers;
  for (int64_t i = 0; i < 24; ++i)
    layers.push_back([i](const Var& h) {
      return call(numbered_layer_op().name, {h}, {{"i", i}})[0];
    });
  Tape tape;
  const Var x = variable(f64({2.0}, {1}));
  const Var y = checkpoint_sequential(layers, x);
  calls.clear();
  backward(sum(y));
  std::vector<std::vector<int64_t>> replays;
  for (int64_t i : calls) {
    if (replays.empty() || i != replays.back().back() + 1) replays.emplace_back();
    replays.back().push_back(i);
  }
  auto range = [](int64_t begin, int64_t end) {
    std::vector<int64_t> r;
    for (int64_t i = begin; i < end; ++i) r.push_back(i);
    return r;
  };
  EXPECT_EQ(replays, (std::vector<std::vector<int64_t>>{range(16, 20), range(11, 16), range(6, 11),
                                                        range(0, 6)}));
}

TEST(MemoryStats, CountLiveAndPeakTensorStorage) {
  reset_peak_memory();
  const MemoryStats before = memory_stats();
  EXPECT_EQ(before.peak_bytes, before.live_bytes);
  int64_t during = 0;
  {
    Tensor big = Tensor::zeros({1 << 20}, DType::f32);  // 4 MiB, one 4 KiB-rounded buffer
    during = memory_stats().live_bytes;
    EXPECT_GE(during - before.live_bytes, 4 << 20);
    Tensor small = Tensor::zeros({3}, DType::f64);
    EXPECT_GT(memory_stats().live_bytes, during);
  }
  const MemoryStats after = memory_stats();
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_GE(after.peak_bytes, during);
  reset_peak_memory();
  EXPECT_EQ(memory_stats().peak_bytes, after.live_bytes);
}

}  // namespace
}  // namespace dg
