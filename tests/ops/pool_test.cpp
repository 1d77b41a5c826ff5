// max_pool2d, max_unpool2d, gather_at, scatter_add_at, avg_pool2d, avg_pool2d_backward.
#include <cmath>
#include <random>

#include "test_util.h"

namespace dg {
namespace {

using test::expect_error;
using test::expect_gradients_ok;
using test::expect_values;
using test::f64;

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
  expect_values(y.value(), {5, 8, 9, 6});
  expect_values(idx.value(), {1, 6, 9, 15});  // the tie 8, 8 keeps the first (row-major) one
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
  expect_values(idx.value(), {0, 0, 1, 0, 0, 1, 2, 2, 3});
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
  expect_values(g[0].value(), {0, 0, 0, 0, 10, 0, 0, 0, 0});
}

struct PoolConfig {
  int64_t N, C, H, W, kH, kW, sh, sw, ph, pw, dh, dw;
  bool ceil;
};

std::vector<PoolConfig> random_pools(uint64_t seed, int count, bool dilation) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  std::vector<PoolConfig> out;
  while (static_cast<int>(out.size()) < count) {
    PoolConfig c{pick(1, 2),
                 pick(1, 3),
                 pick(1, 7),
                 pick(1, 7),
                 pick(1, 3),
                 pick(1, 3),
                 pick(1, 3),
                 pick(1, 3),
                 0,
                 0,
                 dilation ? pick(1, 2) : 1,
                 dilation ? pick(1, 2) : 1,
                 pick(0, 1) == 1};
    c.ph = pick(0, c.kH / 2);
    c.pw = pick(0, c.kW / 2);
    if (c.H + 2 * c.ph - c.dh * (c.kH - 1) - 1 < 0 || c.W + 2 * c.pw - c.dw * (c.kW - 1) - 1 < 0)
      continue;
    out.push_back(c);
  }
  return out;
}

TEST(MaxPool2d, GradientsMatchFiniteDifferencesOverRandomConfigurations) {
  int i = 0;
  for (const PoolConfig& c : random_pools(7, 15, true)) {
    SCOPED_TRACE(fmt::format("case {}: N{} C{} {}x{} k{}x{} s{}x{} p{}x{} d{}x{} ceil {}", i++, c.N,
                             c.C, c.H, c.W, c.kH, c.kW, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw,
                             c.ceil));
    MaxPool2dOptions o{.kernel_size = {c.kH, c.kW},
                       .stride = {c.sh, c.sw},
                       .padding = {c.ph, c.pw},
                       .dilation = {c.dh, c.dw},
                       .ceil_mode = c.ceil};
    expect_gradients_ok(
        [&](const std::vector<Var>& v) { return std::vector<Var>{max_pool2d(v[0], o).values}; },
        {distinct({c.N, c.C, c.H, c.W}, i)});
  }
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
  expect_values(dx[0].value(), {5, 0, 3, 7});
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
  expect_values(avg_pool2d(x, {.kernel_size = 3, .stride = 1, .padding = 1}).value(),
                {4. / 9, 6. / 9, 4. / 9, 6. / 9, 1, 6. / 9, 4. / 9, 6. / 9, 4. / 9});
  expect_values(
      avg_pool2d(x, {.kernel_size = 3, .stride = 1, .padding = 1, .count_include_pad = false})
          .value(),
      {1, 1, 1, 1, 1, 1, 1, 1, 1});
  // Ceil mode: the overhanging window's divisor counts only up to the padded edge.
  Tensor y = Tensor::arange(9, DType::f64).reshape({1, 1, 3, 3});
  expect_values(avg_pool2d(y, {.kernel_size = 2, .ceil_mode = true}).value(), {2, 3.5, 6.5, 8});
}

TEST(AvgPool2d, GradientsMatchFiniteDifferencesOverRandomConfigurations) {
  int i = 0;
  for (const PoolConfig& c : random_pools(9, 15, false)) {
    const bool include_pad = i % 2 == 0;
    SCOPED_TRACE(fmt::format("case {}: N{} C{} {}x{} k{}x{} s{}x{} p{}x{} ceil {} include_pad {}",
                             i++, c.N, c.C, c.H, c.W, c.kH, c.kW, c.sh, c.sw, c.ph, c.pw, c.ceil,
                             include_pad));
    AvgPool2dOptions o{.kernel_size = {c.kH, c.kW},
                       .stride = {c.sh, c.sw},
                       .padding = {c.ph, c.pw},
                       .ceil_mode = c.ceil,
                       .count_include_pad = include_pad};
    expect_gradients_ok(
        [&](const std::vector<Var>& v) { return std::vector<Var>{avg_pool2d(v[0], o)}; },
        {Tensor::randn({c.N, c.C, c.H, c.W}, i, DType::f64)});
  }
}

TEST(PoolErrors, NameTheOpTheArgumentTheShapesAndTheRule) {
  Tensor x = Tensor::zeros({1, 1, 4, 4});
  expect_error([&] { max_pool2d(x, {.kernel_size = 5}); }, "max_pool2d at ",
               ": kernel [5,5] with padding [0,0] does not fit in input 4x4 (output "
               "would be 0x0)");
  expect_error([&] { max_pool2d(x, {.kernel_size = 2, .padding = 2}); }, "max_pool2d at ",
               ": padding [2,2] must be between 0 and half the kernel [2,2]");
  expect_error(
      [&] {
        max_pool2d(Tensor::zeros({4, 4}), {.kernel_size = 2});
      },
      "max_pool2d at ", ": x must be 4-D");
  expect_error([&] { max_pool2d(x, {}); }, "max_pool2d at ", ": kernel_size must be at least 1");
  const Var y = max_pool2d(x, {.kernel_size = 2}).values;
  expect_error(
      [&] {
        max_unpool2d(Tensor::zeros({1, 1, 4, 4}), Tensor::zeros({1, 1, 4, 4}, DType::i64),
                     {.kernel_size = 2, .output_size = {11, 11}});
      },
      "max_unpool2d at ",
      ": output_size [11,11] does not fit input 4x4 with kernel 2, stride 2, padding 0 "
      "(each side must be between 7 and 9)");
  Tensor bad = Tensor::from(std::vector<int64_t>{0, 1, 2, 99}, {1, 1, 2, 2});
  expect_error([&] { max_unpool2d(y, bad, {.kernel_size = 2}); }, "max_unpool2d at ",
               ": indices[0,0,1,1] = 99 is outside the 4x4 plane (valid flat indices "
               "are 0..15)");
  expect_error([&] { max_unpool2d(y, y, {.kernel_size = 2}); }, "max_unpool2d at ",
               ": input 'indices' must be int64");
  expect_error([&] { avg_pool2d(x, {.kernel_size = 3, .padding = 2}); }, "avg_pool2d at ",
               ": padding [2,2] must be between 0");
}

}  // namespace
}  // namespace dg
