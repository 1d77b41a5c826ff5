// Parameter initialisation: fans from PyTorch's layouts, gains, the distributions' ranges and
// spreads, seeding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "deltagraph/deltagraph.h"
#include "test_util.h"

using dg::DType;
using dg::Tensor;
using dg::test::ThrowsError;

namespace {

double sample_std(const Tensor& t) {
  const std::vector<double> v = t.to_vector();
  double mean = 0, sq = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  for (double x : v) sq += (x - mean) * (x - mean);
  return std::sqrt(sq / static_cast<double>(v.size()));
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : t.to_vector()) m = std::max(m, std::abs(x));
  return m;
}

TEST(Init, FansFollowPyTorchLayouts) {
  // conv2d [O, C, kH, kW]: fan_in = C kH kW, fan_out = O kH kW
  dg::Fans conv = dg::compute_fans({32, 1, 5, 5});
  EXPECT_EQ(conv.fan_in, 25);
  EXPECT_EQ(conv.fan_out, 800);
  // linear [out, in]
  dg::Fans linear = dg::compute_fans({10, 128});
  EXPECT_EQ(linear.fan_in, 128);
  EXPECT_EQ(linear.fan_out, 10);
  // conv_transpose2d [C, O, kH, kW] read as the layer really is: C inputs, O outputs
  dg::Fans transposed = dg::compute_fans({16, 8, 3, 3}, dg::WeightLayout::in_out);
  EXPECT_EQ(transposed.fan_in, 144);
  EXPECT_EQ(transposed.fan_out, 72);
  EXPECT_TRUE(ThrowsError([] { dg::compute_fans({5}); }, {"at least 2 axes", "[5]"}));
  EXPECT_TRUE(ThrowsError([] { dg::compute_fans({4, 0, 3, 3}); }, {"axis of size 0"}));
}

TEST(Init, GainsAreTorchs) {
  EXPECT_DOUBLE_EQ(dg::gain(dg::Nonlinearity::linear), 1.0);
  EXPECT_DOUBLE_EQ(dg::gain(dg::Nonlinearity::relu), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(dg::gain(dg::Nonlinearity::tanh), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(dg::gain(dg::Nonlinearity::leaky_relu, 0.2), std::sqrt(2.0 / 1.04));
}

TEST(Init, KaimingUniformHasTheRightBoundAndSpread) {
  // [64, 32, 3, 3]: fan_in 288; bound sqrt(6/288), std sqrt(2/288)
  Tensor w = dg::kaiming_uniform({64, 32, 3, 3}, 7);
  EXPECT_EQ(w.dtype(), DType::f32);
  const double bound = std::sqrt(6.0 / 288);
  EXPECT_LE(max_abs(w), bound);
  EXPECT_GT(max_abs(w), 0.99 * bound);
  EXPECT_NEAR(sample_std(w), std::sqrt(2.0 / 288), 0.02 * std::sqrt(2.0 / 288));
}

TEST(Init, KaimingNormalFanOutAndXavier) {
  const dg::Shape shape{64, 32, 3, 3};  // fan_in 288, fan_out 576
  Tensor k = dg::kaiming_normal(shape, 1, {.mode = dg::FanMode::fan_out, .dtype = DType::f64});
  EXPECT_EQ(k.dtype(), DType::f64);
  EXPECT_NEAR(sample_std(k), std::sqrt(2.0 / 576), 0.02 * std::sqrt(2.0 / 576));
  Tensor xn = dg::xavier_normal(shape, 2);
  EXPECT_NEAR(sample_std(xn), std::sqrt(2.0 / 864), 0.02 * std::sqrt(2.0 / 864));
  Tensor xu = dg::xavier_uniform(shape, 3, {.gain = 2.0});
  EXPECT_LE(max_abs(xu), 2.0 * std::sqrt(6.0 / 864));
  EXPECT_NEAR(sample_std(xu), 2.0 * std::sqrt(2.0 / 864), 0.02 * 2.0 * std::sqrt(2.0 / 864));
}

TEST(Init, ConvTransposeLayoutChangesTheFan) {
  const dg::Shape shape{8, 64, 3, 3};  // conv_transpose2d: 8 in, 64 out
  Tensor as_layer = dg::kaiming_uniform(shape, 1, {.layout = dg::WeightLayout::in_out});
  Tensor as_torch = dg::kaiming_uniform(shape, 1);
  EXPECT_LE(max_abs(as_layer), std::sqrt(6.0 / 72));   // fan_in = 8 * 9
  EXPECT_LE(max_abs(as_torch), std::sqrt(6.0 / 576));  // fan_in = 64 * 9
  EXPECT_GT(max_abs(as_layer), 2 * max_abs(as_torch));
}

TEST(Init, SeededAndReproducible) {
  Tensor a = dg::kaiming_normal({16, 8, 3, 3}, 42);
  Tensor b = dg::kaiming_normal({16, 8, 3, 3}, 42);
  Tensor c = dg::kaiming_normal({16, 8, 3, 3}, 43);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_NE(a.to_vector(), c.to_vector());
}

TEST(Init, RejectsIntegerDtype) {
  EXPECT_TRUE(ThrowsError(
      [] {
        dg::xavier_uniform({4, 4}, 1, {.dtype = DType::i64});
      },
      {"xavier_uniform", "int64"}));
  EXPECT_TRUE(ThrowsError([] { dg::uniform_fan_in({4}, 0, 1); }, {"fan_in must be at least 1"}));
}

}  // namespace
