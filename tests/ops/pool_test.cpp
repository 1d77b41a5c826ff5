// max_pool2d, max_unpool2d, gather_at, scatter_add_at, avg_pool2d, avg_pool2d_backward.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "deltagraph/testing/properties.h"
#include "test_util.h"
#include "typed_calls.h"

namespace dg {
namespace {

using test::expect_gradients_ok;
using test::f64;
using test::ThrowsError;
using test::ValuesNear;

// A tensor of distinct values, shuffled, spaced 0.1 apart: no ties within a pooling window, and
// finite differences (step 1e-6) never change which element is the maximum.
Tensor distinct(const Shape& shape, uint64_t seed) {
  std::vector<double> v(shape.product());
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.1 * static_cast<double>(i) - 3.0;
  std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
  return Tensor::from(v, shape);
}

TEST(MaxPool2d, ValuesAndIndicesByHand) {
  Tensor x = f64({1, 5, 2, 0,  //
                  3, 4, 8, 8,  //
                  0, 9, 1, 1,  //
                  7, 2, 1, 6},
                 {1, 1, 4, 4});
  auto [y, idx] = max_pool2d(x, {.kernel_size = 2});
  EXPECT_TRUE(ValuesNear(y, y.shape(), {5, 8, 9, 6}));
  // The tie 8, 8 keeps the first (row-major) one.
  EXPECT_TRUE(ValuesNear(idx, idx.shape(), {1, 6, 9, 15}));
  EXPECT_EQ(idx.dtype(), DType::i64);
}

// float32 2x2 stride-2 pooling has its own vectorised kernel; it must agree with the generic
// one (float64) on ties (first maximum wins), NaNs (taken, first one wins) and every row width,
// including rows shorter than a vector and ragged tails, with and without padding.
TEST(MaxPool2d, VectorisedTwoByTwoAgreesWithTheGenericKernel) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> small(0, 3);
  for (int64_t W : {2, 3, 5, 14, 16, 17, 31, 32, 33, 56, 70})
    for (int64_t padding : {0, 1}) {
      const Shape shape{2, 3, 6, W};
      std::vector<double> v(static_cast<size_t>(shape.product()));
      for (double& x : v) x = small(rng);  // few distinct values: many ties
      for (size_t i = 0; i < v.size(); i += 7) v[i] = std::nan("");
      const Tensor x64 = Tensor::from(v, shape);
      auto [y64, i64] = max_pool2d(x64, {.kernel_size = 2, .padding = padding});
      auto [y32, i32] = max_pool2d(x64.to(DType::f32), {.kernel_size = 2, .padding = padding});
      ASSERT_EQ(y32.shape(), y64.shape());
      for (int64_t k = 0; k < y64.value().numel(); ++k) {
        const double a = y64.value().at(k), b = y32.value().at(k);
        EXPECT_TRUE(a == b || (std::isnan(a) && std::isnan(b))) << "W " << W << " at " << k;
        EXPECT_EQ(i32.value().at(k), i64.value().at(k)) << "W " << W << " at " << k;
      }
    }
}

TEST(MaxPool2d, PaddingNeverWinsAndIndicesIgnoreIt) {
  Tensor x = Tensor::full({1, 1, 2, 2}, -5.0, DType::f64);
  auto [y, idx] = max_pool2d(x, {.kernel_size = 2, .stride = 1, .padding = 1});
  EXPECT_EQ(y.shape(), (Shape{1, 1, 3, 3}));
  for (int64_t i = 0; i < 9; ++i) EXPECT_EQ(y.value().at(i), -5.0);
  EXPECT_TRUE(ValuesNear(idx, idx.shape(), {0, 0, 1, 0, 0, 1, 2, 2, 3}));
}

TEST(MaxPool2d, CeilModeDropsAWindowStartingInThePadding) {
  // 5 wide, k2 s2: floor gives 2, ceil gives 3 (the last window covers column 4 only).
  Tensor x = distinct({1, 1, 5, 5}, 1);
  EXPECT_EQ(max_pool2d(x, {.kernel_size = 2}).values.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(max_pool2d(x, {.kernel_size = 2, .ceil_mode = true}).values.shape(),
            (Shape{1, 1, 3, 3}));
  // 4 wide with padding 1, k2 s2 ceil: a 4th window would start at 6 >= 4 + 1 and is dropped.
  EXPECT_EQ(
      max_pool2d(distinct({1, 1, 4, 4}, 2), {.kernel_size = 2, .padding = 1, .ceil_mode = true})
          .values.shape(),
      (Shape{1, 1, 3, 3}));
}

TEST(MaxPool2d, GradientRoutesThroughIndicesAndAddsWhereWindowsOverlap) {
  Tape tape;
  Var x = variable(f64({0, 0, 0, 0, 9, 0, 0, 0, 0}, {1, 1, 3, 3}));
  // 2x2 windows with stride 1: the 9 in the centre is the maximum of all four windows.
  auto [y, idx] = max_pool2d(x, {.kernel_size = 2, .stride = 1});
  auto g = grad({y}, {x}, {Var(f64({1, 2, 3, 4}, {1, 1, 2, 2}))});
  EXPECT_TRUE(ValuesNear(g[0], g[0].shape(), {0, 0, 0, 0, 10, 0, 0, 0, 0}));
}

// max_pool2d's sampler (ops/pool.cpp) draws pairwise distinct values (no ties within a window);
// gen::op_sample keeps only samples the op's shape rule accepts. A failure names the
// configuration and RapidCheck shrinks it.
RC_GTEST_PROP(MaxPool2d, GradientsMatchFiniteDifferencesOverRandomConfigurations, ()) {
  const OpDef& op = find_op("max_pool2d");
  const OpSample s = *gen::op_sample(op);
  const Attrs a = make_attrs(op, s.attrs);
  const MaxPool2dOptions o{.kernel_size = a.pair("kernel_size"),
                           .stride = a.pair("stride"),
                           .padding = a.padding("padding"),
                           .dilation = a.pair("dilation"),
                           .ceil_mode = a.boolean("ceil_mode")};
  const CheckResult r = test::gradient_checks(
      [&](const std::vector<Var>& v) { return std::vector<Var>{max_pool2d(v[0], o).values}; },
      s.inputs);
  if (!r.ok) RC_FAIL(describe(op, s) + "\n" + r.report);
}

TEST(MaxUnpool2d, PlacesValuesAtIndicesAndUndoesAPool) {
  Tensor x = distinct({2, 3, 5, 7}, 3);
  auto [y, idx] = max_pool2d(x, {.kernel_size = 2});
  // Odd-sized input: the default output size would be 4x6, so output_size restores 5x7.
  Var up = max_unpool2d(y, idx, {.kernel_size = 2, .output_size = {5, 7}});
  EXPECT_EQ(up.shape(), x.shape());
  // Every pooled maximum is back in place; everything else is 0.
  auto [y2, idx2] = max_pool2d(up, {.kernel_size = 2});
  EXPECT_TRUE(allclose(y2.value(), y.value(), 0, 0));
  EXPECT_TRUE(allclose(idx2.value(), idx.value(), 0, 0));
  int64_t nonzero = 0;
  for (double v : up.value().to_vector()) nonzero += v != 0;
  EXPECT_EQ(nonzero, y.numel());
}

// Pooling an odd-sized map loses its size (9x7 and 8x6 both pool to 4x3); the indices keep it,
// so the default puts values back into the pool's own input size. Indices from elsewhere keep
// PyTorch's formula, and the error it leads to.
TEST(MaxUnpool2d, DefaultSizeIsThePoolsInputWhenTheIndicesComeFromMaxPool) {
  // Positive values, so that re-pooling the unpooled map (zeros elsewhere) finds them again.
  const Tensor x = test::rand64({2, 3, 9, 7}, 5, 0.5, 2.0);
  auto [y, indices] = max_pool2d(input(x), {.kernel_size = 2});
  EXPECT_EQ(y.shape(), (Shape{2, 3, 4, 3}));
  const Var u = max_unpool2d(y, indices, {.kernel_size = 2});
  EXPECT_EQ(u.shape(), (Shape{2, 3, 9, 7}));
  // Every pooled value is back where it came from.
  const Var again = max_pool2d(u, {.kernel_size = 2}).values;
  EXPECT_TRUE(ValuesNear(again, {2, 3, 4, 3}, y.value().to_vector()));
  EXPECT_TRUE(ThrowsError(
      [&] { (void)max_unpool2d(y, input(indices.value().clone()), {.kernel_size = 2}); },
      {"max_unpool2d at ", "is outside the 8x6 plane"}));
  // An explicit size still wins.
  EXPECT_EQ(max_unpool2d(y, indices, {.kernel_size = 2, .output_size = {8, 7}}).shape(),
            (Shape{2, 3, 8, 7}));
}

TEST(MaxUnpool2d, GradientIsAGatherAtTheIndices) {
  Tensor idx = Tensor::from(std::vector<int64_t>{5, 0, 3, 7}, {1, 1, 2, 2});
  expect_gradients_ok(
      [&](const std::vector<Var>& v) {
        return std::vector<Var>{max_unpool2d(v[0], idx, {.kernel_size = 2, .output_size = {3, 3}})};
      },
      {Tensor::randn({1, 1, 2, 2}, 1, DType::f64)});
  Tape tape;
  Var x = variable(f64({1, 2, 3, 4}, {1, 1, 2, 2}));
  Tensor g = Tensor::arange(9, DType::f64).reshape({1, 1, 3, 3});
  auto dx = grad({max_unpool2d(x, idx, {.kernel_size = 2, .output_size = {3, 3}})}, {x}, {Var(g)});
  EXPECT_TRUE(ValuesNear(dx[0], dx[0].shape(), {5, 0, 3, 7}));
}

TEST(PoolRouting, PoolVjpEqualsUnpoolWithoutOverlapAndScatterGatherAreAdjoint) {
  Tensor x = distinct({2, 2, 6, 6}, 4);
  Tape tape;
  Var xv = variable(x);
  // Named, not bound: the lambdas below capture them (clang 14 cannot capture bindings).
  const PoolResult pooled = max_pool2d(xv, {.kernel_size = 2});
  const Var &y = pooled.values, &idx = pooled.indices;
  Tensor g = Tensor::randn(y.shape(), 5, DType::f64);
  auto dx = grad({y}, {xv}, {Var(g)});
  Var unpooled = max_unpool2d(g, idx, {.kernel_size = 2, .output_size = {6, 6}});
  EXPECT_TRUE(allclose(dx[0].value(), unpooled.value(), 0, 0));
  // <scatter_add_at(a, i), b> = <a, gather_at(b, i)>
  Tensor a = Tensor::randn(y.shape(), 6, DType::f64), b = Tensor::randn(x.shape(), 7, DType::f64);
  double lhs = sum(scatter_add_at(a, idx, {6, 6}) * Var(b)).item();
  double rhs = sum(Var(a) * gather_at(b, idx)).item();
  EXPECT_NEAR(lhs, rhs, 1e-12);
  expect_gradients_ok(
      [&](const std::vector<Var>& v) { return std::vector<Var>{gather_at(v[0], idx)}; }, {b});
  expect_gradients_ok(
      [&](const std::vector<Var>& v) {
        return std::vector<Var>{scatter_add_at(v[0], idx, {6, 6})};
      },
      {a});
}

TEST(AvgPool2d, DivisorsFollowPyTorch) {
  Tensor x = Tensor::ones({1, 1, 3, 3}, DType::f64);
  // Padding 1, k3 s1: a corner window holds 4 real ones of 9 places.
  const Var padded = avg_pool2d(x, {.kernel_size = 3, .stride = 1, .padding = 1});
  EXPECT_TRUE(ValuesNear(padded, padded.shape(),
                         {4. / 9, 6. / 9, 4. / 9, 6. / 9, 1, 6. / 9, 4. / 9, 6. / 9, 4. / 9}));
  const Var unpadded =
      avg_pool2d(x, {.kernel_size = 3, .stride = 1, .padding = 1, .count_include_pad = false});
  EXPECT_TRUE(ValuesNear(unpadded, unpadded.shape(), {1, 1, 1, 1, 1, 1, 1, 1, 1}));
  // Ceil mode: the overhanging window's divisor counts only up to the padded edge.
  Tensor y = Tensor::arange(9, DType::f64).reshape({1, 1, 3, 3});
  const Var overhanging = avg_pool2d(y, {.kernel_size = 2, .ceil_mode = true});
  EXPECT_TRUE(ValuesNear(overhanging, overhanging.shape(), {2, 3.5, 6.5, 8}));
}

RC_GTEST_PROP(AvgPool2d, GradientsMatchFiniteDifferencesOverRandomConfigurations, ()) {
  const OpDef& op = find_op("avg_pool2d");
  const OpSample s = *gen::op_sample(op);
  const Attrs a = make_attrs(op, s.attrs);
  const AvgPool2dOptions o{.kernel_size = a.pair("kernel_size"),
                           .stride = a.pair("stride"),
                           .padding = a.padding("padding"),
                           .ceil_mode = a.boolean("ceil_mode"),
                           .count_include_pad = a.boolean("count_include_pad")};
  const CheckResult r = test::gradient_checks(
      [&](const std::vector<Var>& v) { return std::vector<Var>{avg_pool2d(v[0], o)}; }, s.inputs);
  if (!r.ok) RC_FAIL(describe(op, s) + "\n" + r.report);
}

// F.adaptive_avg_pool2d's cells: rows [floor(i*in/out), ceil((i+1)*in/out)). A 5-wide row in 3
// cells averages [0,2), [1,4), [3,5); global pooling is the plain mean; more cells than rows
// repeat rows. Its backward op is its adjoint: <pool(x), g> = <x, backward(g)>.
TEST(AdaptiveAvgPool2d, CellsFollowPyTorch) {
  Var x = f64({1, 2, 3, 4, 5, 10, 20, 30, 40, 50}, {1, 1, 2, 5});
  EXPECT_TRUE(ValuesNear(adaptive_avg_pool2d(x, {1, 3}), {1, 1, 1, 3}, {8.25, 16.5, 24.75}));
  EXPECT_TRUE(ValuesNear(adaptive_avg_pool2d(x, {1, 1}), {1, 1, 1, 1}, {16.5}));
  EXPECT_TRUE(ValuesNear(adaptive_avg_pool2d(x, {2, 5}), {1, 1, 2, 5},
                         {1, 2, 3, 4, 5, 10, 20, 30, 40, 50}));
  Var up = adaptive_avg_pool2d(f64({1, 3}, {1, 1, 1, 2}), {1, 3});  // [0,1), [0,2), [1,2)
  EXPECT_TRUE(ValuesNear(up, {1, 1, 1, 3}, {1, 2, 3}));
  Tensor a = Tensor::randn({2, 3, 7, 5}, 3, DType::f64),
         g = Tensor::randn({2, 3, 3, 4}, 4, DType::f64);
  const double lhs = sum(mul(adaptive_avg_pool2d(a, {3, 4}), g)).item();
  const double rhs = sum(mul(a, adaptive_avg_pool2d_backward(g, {7, 5}))).item();
  EXPECT_NEAR(lhs, rhs, 1e-12 * (1 + std::abs(lhs)));
  expect_gradients_ok(
      [](const std::vector<Var>& v) {
        return std::vector<Var>{adaptive_avg_pool2d(v[0], {3, 2})};
      },
      {Tensor::randn({2, 2, 5, 4}, 5, DType::f64)});
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)adaptive_avg_pool2d(x, {0, 2});
      },
      {"adaptive_avg_pool2d at ", "output_size must be at least [1,1], got [0,2]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)adaptive_avg_pool2d(f64({1, 2}, {2}), {1, 1});
      },
      {"adaptive_avg_pool2d at ", "x must be 4-D [N,C,H,W], got [2]"}));
}

// ---- asymmetric padding ------------------------------------------------------------------

// max_pool2d with padding [top, bottom, left, right] is the pool of the -inf-padded input with
// no padding; its indices stay flat h*W + w positions of the unpadded plane (the padded pool's
// index, shifted back by the top rows and left columns), and max_unpool2d puts the maxima back
// where they came from.
TEST(MaxPool2d, FourSidedPaddingIsThePoolOfTheMinusInfinityPaddedInput) {
  const Tensor x = distinct({2, 3, 7, 6}, 11);
  const double inf = std::numeric_limits<double>::infinity();
  for (const MaxPool2dOptions& o :
       {MaxPool2dOptions{.kernel_size = 3, .stride = 2, .padding = {0, 1, 1, 0}},
        MaxPool2dOptions{.kernel_size = {2, 3}, .stride = 1, .padding = {1, 0, 0, 1}},
        MaxPool2dOptions{.kernel_size = 3, .stride = 2, .padding = {1, 0, 1, 1}, .ceil_mode = true},
        MaxPool2dOptions{.kernel_size = 3, .padding = {0, 1, 1, 0}, .dilation = {1, 2}}}) {
    const Padding& p = o.padding;
    for (DType dtype : {DType::f64, DType::f32}) {
      auto [y, idx] = max_pool2d(x.to(dtype), o);
      MaxPool2dOptions unpadded = o;
      unpadded.padding = 0;
      const Var padded_x =
          pad2d(x.to(dtype), {.pads = {p.left, p.right, p.top, p.bottom}, .value = -inf});
      auto [ref, ref_idx] = max_pool2d(padded_x, unpadded);
      ASSERT_EQ(y.shape(), ref.shape());
      EXPECT_TRUE(allclose(y.value(), ref.value(), 0, 0));
      const int64_t W = x.shape()[3], padded_W = padded_x.shape()[3];
      for (int64_t i = 0; i < idx.value().numel(); ++i) {
        const auto at = static_cast<int64_t>(ref_idx.value().at(i));
        const int64_t h = at / padded_W - p.top, w = at % padded_W - p.left;
        ASSERT_EQ(static_cast<int64_t>(idx.value().at(i)), h * W + w) << "at " << i;
      }
    }
    // Unpooled with the same window (max_unpool2d has no dilation) at the pool's input size, the
    // default, each maximum is back at its own position.
    if (o.dilation == Pair{1, 1}) {
      auto [y, idx] = max_pool2d(x, o);
      const Var back = max_unpool2d(
          y, idx, {.kernel_size = o.kernel_size, .stride = o.stride, .padding = o.padding});
      ASSERT_EQ(back.shape(), x.shape());
      for (int64_t i = 0; i < idx.value().numel(); ++i) {
        const int64_t plane = i / (y.shape()[2] * y.shape()[3]);
        const auto at = plane * 42 + static_cast<int64_t>(idx.value().at(i));
        EXPECT_EQ(back.value().at(at), x.at(at));
      }
    }
    expect_gradients_ok(
        [&](const std::vector<Var>& v) { return std::vector<Var>{max_pool2d(v[0], o).values}; },
        {x});
  }
}

// avg_pool2d with four sides: counting the padding, it is the pool of the zero-padded input (the
// divisor is the whole window); not counting it, the window sum over the real cells it covers.
TEST(AvgPool2d, FourSidedPaddingFollowsPyTorchsDivisorRules) {
  const Tensor x = test::rand64({2, 2, 5, 6}, 12);
  for (const Padding& p : {Padding(0, 1, 1, 0), Padding(1, 0, 1, 1), Padding(1, 1, 0, 1)}) {
    const AvgPool2dOptions counted{.kernel_size = {3, 2}, .stride = {2, 1}, .padding = p};
    const Var padded = pad2d(x, {.pads = {p.left, p.right, p.top, p.bottom}});
    const Var reference = avg_pool2d(padded, {.kernel_size = {3, 2}, .stride = {2, 1}});
    EXPECT_TRUE(allclose(avg_pool2d(x, counted).value(), reference.value(), 1e-12, 1e-12));
    AvgPool2dOptions real_only = counted;
    real_only.count_include_pad = false;
    const Var cells = avg_pool2d(
        pad2d(Tensor::ones(x.shape(), DType::f64), {.pads = {p.left, p.right, p.top, p.bottom}}),
        {.kernel_size = {3, 2}, .stride = {2, 1}});
    EXPECT_TRUE(
        allclose(avg_pool2d(x, real_only).value(), div(reference, cells).value(), 1e-12, 1e-12));
    for (const AvgPool2dOptions& o : {counted, real_only})
      expect_gradients_ok(
          [&](const std::vector<Var>& v) { return std::vector<Var>{avg_pool2d(v[0], o)}; }, {x},
          true);
  }
  // Right padding only: 3 wide, k2 s2, padding [0,0,0,1] gives windows [0,2) and [2,4), the
  // second holding one real column and one padding column (which counts in the divisor).
  const Var overhang = avg_pool2d(Tensor::arange(3, DType::f64).reshape({1, 1, 1, 3}),
                                  {.kernel_size = {1, 2}, .padding = {0, 0, 0, 1}});
  EXPECT_TRUE(ValuesNear(overhang, {1, 1, 1, 2}, {0.5, 1.0}));
}

TEST(PoolErrors, PaddingIsCheckedPerSide) {
  const Tensor x = Tensor::zeros({1, 1, 4, 4});
  EXPECT_TRUE(ThrowsError(
      [&] {
        max_pool2d(x, {.kernel_size = 2, .padding = {0, 2, 0, 0}});
      },
      {"max_pool2d at ", ": padding [0,2,0,0] must be between 0 and half the kernel [2,2]"}));
  EXPECT_TRUE(ThrowsError([&] { avg_pool2d(x, {.kernel_size = 2, .padding = "same"}); },
                          {"avg_pool2d at ", ": padding \"same\" is for conv2d"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        max_pool2d(x, {.kernel_size = 3, .stride = 1, .padding = {0, 1, -1, 0}});
      },
      {"max_pool2d at ", ": padding [0,1,-1,0] must be between 0"}));
}

TEST(PoolErrors, NameTheOpTheArgumentTheShapesAndTheRule) {
  Tensor x = Tensor::zeros({1, 1, 4, 4});
  EXPECT_TRUE(ThrowsError([&] { max_pool2d(x, {.kernel_size = 5}); },
                          {"max_pool2d at ",
                           ": kernel [5,5] with padding [0,0] does not fit in input 4x4 (output "
                           "would be 0x0)"}));
  EXPECT_TRUE(ThrowsError(
      [&] { max_pool2d(x, {.kernel_size = 2, .padding = 2}); },
      {"max_pool2d at ", ": padding [2,2] must be between 0 and half the kernel [2,2]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        max_pool2d(Tensor::zeros({4, 4}), {.kernel_size = 2});
      },
      {"max_pool2d at ", ": x must be 4-D"}));
  EXPECT_TRUE(ThrowsError([&] { max_pool2d(x, {}); },
                          {"max_pool2d at ", ": kernel_size must be at least 1"}));
  const Var y = max_pool2d(x, {.kernel_size = 2}).values;
  EXPECT_TRUE(ThrowsError(
      [&] {
        max_unpool2d(Tensor::zeros({1, 1, 4, 4}), Tensor::zeros({1, 1, 4, 4}, DType::i64),
                     {.kernel_size = 2, .output_size = {11, 11}});
      },
      {"max_unpool2d at ",
       ": output_size [11,11] does not fit input 4x4 with kernel 2, stride 2, padding 0 "
       "(each side must be between 7 and 9)"}));
  Tensor bad = Tensor::from(std::vector<int64_t>{0, 1, 2, 99}, {1, 1, 2, 2});
  EXPECT_TRUE(ThrowsError([&] { max_unpool2d(y, bad, {.kernel_size = 2}); },
                          {"max_unpool2d at ",
                           ": indices[0,0,1,1] = 99 is outside the 4x4 plane (valid flat indices "
                           "are 0..15)"}));
  EXPECT_TRUE(ThrowsError([&] { max_unpool2d(y, y, {.kernel_size = 2}); },
                          {"max_unpool2d at ", ": input 'indices' must be int64"}));
  EXPECT_TRUE(ThrowsError([&] { avg_pool2d(x, {.kernel_size = 3, .padding = 2}); },
                          {"avg_pool2d at ", ": padding [2,2] must be between 0"}));
}

}  // namespace
}  // namespace dg

// ---- how each op of this family is called through its typed function ---------------------
// (tests/typed_ops_test.cpp compares each with the call by name; an op missing here fails there)

namespace typed_calls_pool {
using namespace dg;
using Vars = std::vector<dg::Var>;
AvgPool2dOptions avg_pool2d_options(const Attrs& a) {
  return {.kernel_size = a.pair("kernel_size"),
          .stride = a.pair("stride"),
          .padding = a.padding("padding"),
          .ceil_mode = a.boolean("ceil_mode"),
          .count_include_pad = a.boolean("count_include_pad")};
}

const bool listed = dg::test::list_typed_calls({
    {"max_pool2d",
     [](const Vars& in, const Attrs& a) {
       PoolResult r = max_pool2d(in[0], {.kernel_size = a.pair("kernel_size"),
                                         .stride = a.pair("stride"),
                                         .padding = a.padding("padding"),
                                         .dilation = a.pair("dilation"),
                                         .ceil_mode = a.boolean("ceil_mode")});
       return Vars{r.values, r.indices};
     }},
    {"max_unpool2d",
     [](const Vars& in, const Attrs& a) {
       return Vars{max_unpool2d(in[0], in[1],
                                {.kernel_size = a.pair("kernel_size"),
                                 .stride = a.pair("stride"),
                                 .padding = a.padding("padding"),
                                 .output_size = a.pair("output_size")})};
     }},
    {"gather_at", [](const Vars& in, const Attrs&) { return Vars{gather_at(in[0], in[1])}; }},
    {"scatter_add_at",
     [](const Vars& in, const Attrs& a) {
       return Vars{scatter_add_at(in[0], in[1], a.pair("output_size"))};
     }},
    {"avg_pool2d",
     [](const Vars& in, const Attrs& a) { return Vars{avg_pool2d(in[0], avg_pool2d_options(a))}; }},
    {"avg_pool2d_backward",
     [](const Vars& in, const Attrs& a) {
       return Vars{avg_pool2d_backward(in[0], a.pair("input_size"), avg_pool2d_options(a))};
     }},
    {"adaptive_avg_pool2d",
     [](const Vars& in, const Attrs& a) {
       return Vars{adaptive_avg_pool2d(in[0], a.pair("output_size"))};
     }},
    {"adaptive_avg_pool2d_backward",
     [](const Vars& in, const Attrs& a) {
       return Vars{adaptive_avg_pool2d_backward(in[0], a.pair("input_size"))};
     }},
});
}  // namespace typed_calls_pool
