// The reduction family: sum, mean (all axes or some, keepdims), broadcast_to, sum_to, argmax.
#include <gtest/gtest.h>

#include <cmath>

#include "deltagraph/deltagraph.h"
#include "test_util.h"
#include "typed_calls.h"

using dg::DType;
using dg::Ints;
using dg::Shape;
using dg::Tensor;
using dg::Var;
using dg::test::expect_gradients_ok;
using dg::test::f64;
using dg::test::Fn;
using dg::test::ThrowsError;
using dg::test::ThrowsExactly;
using dg::test::ValuesNear;
using dg::test::Vars;

namespace {

Var in(std::vector<double> v, const Shape& s) { return dg::input(f64(std::move(v), s)); }
// [[1,2,3],[4,5,6]]
Var m23() { return in({1, 2, 3, 4, 5, 6}, {2, 3}); }

}  // namespace

// ---- forward ----------------------------------------------------------------------------

TEST(Reduce, SumForward) {
  EXPECT_TRUE(ValuesNear(dg::sum(m23()), {}, {21}));
  EXPECT_TRUE(ValuesNear(dg::sum(m23(), {.axes = {0}}), {3}, {5, 7, 9}));
  EXPECT_TRUE(ValuesNear(dg::sum(m23(), {.axes = {1}}), {2}, {6, 15}));
  EXPECT_TRUE(ValuesNear(dg::sum(m23(), {.axes = {-1}}), {2}, {6, 15}));
  EXPECT_TRUE(ValuesNear(dg::sum(m23(), {.axes = {1}, .keepdims = true}), {2, 1}, {6, 15}));
  EXPECT_TRUE(ValuesNear(dg::sum(m23(), {.keepdims = true}), {1, 1}, {21}));
  EXPECT_TRUE(ValuesNear(dg::sum(m23(), {.axes = {0, 1}}), {}, {21}));
  EXPECT_TRUE(ValuesNear(dg::sum(in({4}, {})), {}, {4}));
  EXPECT_TRUE(ValuesNear(dg::sum(dg::input(Tensor::zeros({2, 0}, DType::f64)), {.axes = {1}}), {2},
                         {0, 0}));

  // [2,3,4] over axes 0 and 2: out[j] = sum_{i,k} x[i,j,k].
  Tensor x = Tensor::arange(24, DType::f64).reshape({2, 3, 4});
  std::vector<double> expected(3, 0);
  for (int64_t i = 0; i < 24; ++i) expected[(i / 4) % 3] += static_cast<double>(i);
  EXPECT_TRUE(ValuesNear(dg::sum(dg::input(x), {.axes = {0, 2}}), {3}, expected));
  EXPECT_TRUE(
      ValuesNear(dg::sum(dg::input(x), {.axes = {2, 0}, .keepdims = true}), {1, 3, 1}, expected));

  // 6-D, reducing non-adjacent axes.
  Tensor y = Tensor::arange(48, DType::f64).reshape({2, 1, 3, 1, 2, 4});
  Var s = dg::sum(dg::input(y), {.axes = {0, 2, 5}});
  ASSERT_EQ(s.shape(), (Shape{1, 1, 2}));
  double s0 = 0, s1 = 0;
  for (int64_t i = 0; i < 48; ++i) ((i / 4) % 2 ? s1 : s0) += static_cast<double>(i);
  EXPECT_TRUE(ValuesNear(s, {1, 1, 2}, {s0, s1}));
}

TEST(Reduce, MeanForward) {
  EXPECT_TRUE(ValuesNear(dg::mean(m23()), {}, {3.5}));
  EXPECT_TRUE(ValuesNear(dg::mean(m23(), {.axes = {0}}), {3}, {2.5, 3.5, 4.5}));
  EXPECT_TRUE(ValuesNear(dg::mean(m23(), {.axes = {1}, .keepdims = true}), {2, 1}, {2, 5}));
  EXPECT_TRUE(ValuesNear(dg::mean(m23(), {.axes = {-2, -1}}), {}, {3.5}));
  Var f = dg::mean(dg::input(Tensor::from(std::vector<float>{1, 2, 3, 4}, {2, 2})), {.axes = {1}});
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_TRUE(ValuesNear(f, {2}, {1.5, 3.5}));
}

TEST(Reduce, SumAccumulatesFloat32Accurately) {
  // 2^24 + 1 + 1 + 1 + 1 in float32: a float accumulator loses every +1 (the spacing at 2^24
  // is 2); the exact sum 2^24 + 4 is representable.
  Var x = dg::input(Tensor::from(std::vector<float>{16777216.f, 1, 1, 1, 1}, {5}));
  EXPECT_EQ(dg::sum(x).item(), 16777220.0);
  EXPECT_EQ(dg::sum(x).dtype(), DType::f32);
}

TEST(Reduce, BroadcastToForward) {
  EXPECT_TRUE(ValuesNear(dg::broadcast_to(in({1, 2}, {2, 1}), {2, 3}), {2, 3}, {1, 1, 1, 2, 2, 2}));
  EXPECT_TRUE(ValuesNear(dg::broadcast_to(in({1, 2, 3}, {3}), {2, 3}), {2, 3}, {1, 2, 3, 1, 2, 3}));
  EXPECT_TRUE(ValuesNear(dg::broadcast_to(in({7}, {}), {2, 3}), {2, 3}, {7, 7, 7, 7, 7, 7}));
  EXPECT_TRUE(ValuesNear(dg::broadcast_to(in({7}, {1}), {2, 2}), {2, 2}, {7, 7, 7, 7}));
  Var x = in({1, 2, 3}, {3, 1});
  Var big = dg::broadcast_to(x, {2, 3, 4});
  ASSERT_EQ(big.shape(), (Shape{2, 3, 4}));
  for (int64_t i = 0; i < 24; ++i) EXPECT_EQ(big.value().at(i), 1 + (i / 4) % 3) << i;
  // The same shape is a no-op returning the same value.
  EXPECT_TRUE(dg::broadcast_to(x, {3, 1}) == x);
}

TEST(Reduce, SumToForward) {
  Var x = m23();
  EXPECT_TRUE(ValuesNear(dg::sum_to(x, {3}), {3}, {5, 7, 9}));
  EXPECT_TRUE(ValuesNear(dg::sum_to(x, {1, 3}), {1, 3}, {5, 7, 9}));
  EXPECT_TRUE(ValuesNear(dg::sum_to(x, {2, 1}), {2, 1}, {6, 15}));
  EXPECT_TRUE(ValuesNear(dg::sum_to(x, {}), {}, {21}));
  EXPECT_TRUE(ValuesNear(dg::sum_to(x, {1}), {1}, {21}));
  Tensor t = Tensor::arange(24, DType::f64).reshape({2, 3, 4});
  std::vector<double> expected(3, 0);
  for (int64_t i = 0; i < 24; ++i) expected[(i / 4) % 3] += static_cast<double>(i);
  EXPECT_TRUE(ValuesNear(dg::sum_to(dg::input(t), {3, 1}), {3, 1}, expected));
  EXPECT_TRUE(dg::sum_to(x, {2, 3}) == x);
}

// ---- gradients --------------------------------------------------------------------------

TEST(Reduce, SumAndMeanHandGradients) {
  dg::Tape tape;
  Var x = dg::variable(f64({1, 2, 3, 4, 5, 6}, {2, 3}));
  auto g = dg::grad({dg::sum(x, {.axes = {1}})}, {x}, {dg::constant(f64({1, -2}, {2}))});
  EXPECT_TRUE(ValuesNear(g[0], {2, 3}, {1, 1, 1, -2, -2, -2}));
  auto gm = dg::grad({dg::mean(x, {.axes = {0}})}, {x}, {dg::constant(f64({3, 6, 9}, {3}))});
  EXPECT_TRUE(ValuesNear(gm[0], {2, 3}, {1.5, 3, 4.5, 1.5, 3, 4.5}));
  auto ga = dg::grad(dg::mean(x), {x});
  EXPECT_TRUE(ValuesNear(ga[0], {2, 3}, {1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6}));
}

TEST(Reduce, SumMeanGradientChecks) {
  struct Case {
    Shape shape;
    dg::ReduceOptions options;
  };
  std::vector<Case> cases = {
      {{5}, {}},
      {{}, {}},
      {{2, 3}, {}},
      {{2, 3}, {.keepdims = true}},
      {{2, 3}, {.axes = {0}}},
      {{2, 3}, {.axes = {-1}, .keepdims = true}},
      {{2, 3, 4}, {.axes = {0, 2}}},
      {{2, 3, 4}, {.axes = {1}, .keepdims = true}},
      {{2, 1, 3, 2}, {.axes = {1, 3}}},
  };
  uint64_t seed = 500;
  for (const Case& c : cases) {
    Tensor x = dg::test::rand64(c.shape, ++seed);
    const dg::ReduceOptions o = c.options;
    Fn fsum = [o](const Vars& v) { return Vars{dg::sum(v[0], o)}; };
    Fn fmean = [o](const Vars& v) { return Vars{dg::mean(v[0], o)}; };
    std::string what = fmt::format("{} axes {} keepdims {}", c.shape, o.axes, o.keepdims);
    {
      SCOPED_TRACE("sum " + what);
      expect_gradients_ok(fsum, {x});
    }
    {
      SCOPED_TRACE("mean " + what);
      expect_gradients_ok(fmean, {x});
    }
  }
  // Reductions inside a nonlinear expression, so second derivatives are not trivially zero.
  Fn f = [](const Vars& v) {
    Var s = dg::sum(dg::mul(v[0], v[0]), {.axes = {1}, .keepdims = true});
    return Vars{dg::mean(dg::mul(s, v[0]), {.axes = {0}})};
  };
  SCOPED_TRACE("sum/mean composed");
  expect_gradients_ok(f, {dg::test::rand64({3, 4}, 550)});
}

TEST(Reduce, BroadcastToSumToGradientChecks) {
  struct Case {
    Shape small, big;
  };
  std::vector<Case> cases = {
      {{3, 1}, {2, 3, 4}}, {{4}, {2, 1, 4}}, {{}, {2, 3}},     {{1}, {3}},
      {{2, 1}, {2, 3}},    {{1, 3}, {2, 3}}, {{2, 3}, {2, 3}},
  };
  uint64_t seed = 600;
  for (const Case& c : cases) {
    const Shape small = c.small, big = c.big;
    Fn fb = [big](const Vars& v) { return Vars{dg::broadcast_to(v[0], big)}; };
    Fn fs = [small](const Vars& v) { return Vars{dg::sum_to(v[0], small)}; };
    {
      SCOPED_TRACE(fmt::format("broadcast_to {} -> {}", small, big));
      expect_gradients_ok(fb, {dg::test::rand64(small, ++seed)});
    }
    {
      SCOPED_TRACE(fmt::format("sum_to {} -> {}", big, small));
      expect_gradients_ok(fs, {dg::test::rand64(big, ++seed)});
    }
    // Nonlinear around them, so the second-order check sees them inside a product.
    Fn fb2 = [big](const Vars& v) {
      Var b = dg::broadcast_to(v[0], big);
      return Vars{dg::mul(b, b)};
    };
    Fn fs2 = [small](const Vars& v) {
      Var s = dg::sum_to(v[0], small);
      return Vars{dg::mul(s, s)};
    };
    {
      SCOPED_TRACE(fmt::format("broadcast_to^2 {} -> {}", small, big));
      expect_gradients_ok(fb2, {dg::test::rand64(small, ++seed)});
    }
    {
      SCOPED_TRACE(fmt::format("sum_to^2 {} -> {}", big, small));
      expect_gradients_ok(fs2, {dg::test::rand64(big, ++seed)});
    }
  }
}

TEST(Reduce, LargeInputsUseDirectionalChecks) {
  // More than full_limit elements: the directional mode of gradcheck.
  Fn f = [](const Vars& v) { return Vars{dg::sum(dg::mul(v[0], v[0]), {.axes = {0, 2}})}; };
  SCOPED_TRACE("sum large");
  expect_gradients_ok(f, {dg::test::rand64({8, 9, 10}, 700)});
}

// ---- shape-rule errors ------------------------------------------------------------------

// torch.argmax: the first maximum wins a tie, NaN is the largest, negative axes count from the
// end, keepdims keeps the axis with size 1; int64 inputs too.
TEST(Reduce, ArgmaxFollowsPyTorch) {
  // [[3, 1, 3], [0, 5, 5]]: ties resolve to the first index.
  Var x = in({3, 1, 3, 0, 5, 5}, {2, 3});
  Var rows = dg::argmax(x);  // axis 1 by default
  EXPECT_EQ(rows.dtype(), DType::i64);
  EXPECT_EQ(rows.shape(), (Shape{2}));
  EXPECT_EQ(rows.value().to_vector(), (std::vector<double>{0, 1}));
  EXPECT_EQ(dg::argmax(x, {.axis = 0}).value().to_vector(), (std::vector<double>{0, 1, 1}));
  Var kept = dg::argmax(x, {.axis = -1, .keepdims = true});
  EXPECT_EQ(kept.shape(), (Shape{2, 1}));
  EXPECT_EQ(kept.value().to_vector(), (std::vector<double>{0, 1}));
  EXPECT_EQ(dg::argmax(in({1, NAN, 7, NAN}, {4}), {.axis = 0}).value().to_vector(),
            (std::vector<double>{1}));
  Var labels = dg::input(Tensor::from(std::vector<int64_t>{2, 9, 9, 4}, {2, 2}));
  EXPECT_EQ(dg::argmax(labels).value().to_vector(), (std::vector<double>{1, 0}));
  // Over the classes of a [N, C, H, W] map: one index per pixel.
  Var logits = dg::input(Tensor::randn({2, 5, 3, 4}, 1, DType::f64));
  EXPECT_EQ(dg::argmax(logits).shape(), (Shape{2, 3, 4}));
  // Not differentiable: a result no gradient flows through, even from a Param.
  dg::Param p(Tensor::randn({3, 4}, 2, DType::f64));
  dg::Tape tape;
  EXPECT_FALSE(dg::argmax(p).requires_grad());
}

TEST(Reduce, ArgmaxErrors) {
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::argmax(in({1, 2}, {2}));
      },
      "argmax at ", ": axis 1 is out of range for x of shape [2] (rank 1)"));
  EXPECT_TRUE(ThrowsExactly([] { (void)dg::argmax(in({1}, {})); }, "argmax at ",
                            ": x must have at least one axis, got a scalar"));
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::argmax(in({}, {2, 0}));
      },
      "argmax at ", ": axis 1 of x [2,0] is empty: there is no largest element"));
}

TEST(Reduce, AxisErrors) {
  EXPECT_TRUE(ThrowsExactly([] { (void)dg::sum(m23(), {.axes = {2}}); }, "sum at ",
                            ": axis 2 is out of range for x of shape [2,3] (rank 2)"));
  EXPECT_TRUE(ThrowsExactly([] { (void)dg::mean(m23(), {.axes = {-3}}); }, "mean at ",
                            ": axis -3 is out of range for x of shape [2,3] (rank 2)"));
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::sum(m23(), {.axes = {1, -1}});
      },
      "sum at ", ": axis -1 is listed twice in axes [1,-1]"));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)dg::mean(m23(), {.axes = {0, 0}});
      },
      {"mean", "listed twice"}));
  EXPECT_TRUE(
      ThrowsError([] { (void)dg::sum(in({1}, {}), {.axes = {0}}); }, {"sum", "axis 0", "rank 0"}));
  EXPECT_THROW((void)dg::sum(m23(), {.axes = {5}}), dg::ShapeError);
}

TEST(Reduce, BroadcastErrors) {
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::broadcast_to(m23(), {3, 3});
      },
      "broadcast_to at ",
      ": x of shape [2,3] cannot be broadcast to [3,3] (aligned at "
      "the right, each axis must match or be 1)"));
  EXPECT_TRUE(
      ThrowsError([] { (void)dg::broadcast_to(m23(), {3}); }, {"broadcast_to", "[2,3]", "[3]"}));
  EXPECT_TRUE(ThrowsExactly([] { (void)dg::sum_to(m23(), {2}); }, "sum_to at ",
                            ": x of shape [2,3] cannot be summed to [2]: [2] does not "
                            "broadcast to [2,3]"));
  EXPECT_TRUE(ThrowsError([] { (void)dg::sum_to(m23(), {1, 2, 3}); }, {"sum_to", "[1,2,3]"}));
  EXPECT_TRUE(ThrowsError([] { (void)dg::call("broadcast_to", {m23()}); },
                          {"broadcast_to", "missing required attribute 'shape'"}));
}

// ---- how each op of this family is called through its typed function ---------------------
// (tests/typed_ops_test.cpp compares each with the call by name; an op missing here fails there)

namespace typed_calls_reduce {
using namespace dg;
using Vars = std::vector<dg::Var>;
ReduceOptions reduce_options(const Attrs& a) {
  return {.axes = a.ints("axes"), .keepdims = a.boolean("keepdims")};
}

const bool listed = dg::test::list_typed_calls({
    {"broadcast_to",
     [](const Vars& in, const Attrs& a) { return Vars{broadcast_to(in[0], a.ints("shape"))}; }},
    {"sum_to", [](const Vars& in, const Attrs& a) { return Vars{sum_to(in[0], a.ints("shape"))}; }},
    {"argmax",
     [](const Vars& in, const Attrs& a) {
       return Vars{argmax(in[0], {.axis = a.integer("axis"), .keepdims = a.boolean("keepdims")})};
     }},
    {"sum", [](const Vars& in, const Attrs& a) { return Vars{sum(in[0], reduce_options(a))}; }},
    {"mean", [](const Vars& in, const Attrs& a) { return Vars{mean(in[0], reduce_options(a))}; }},
});
}  // namespace typed_calls_reduce
