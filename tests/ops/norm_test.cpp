// The normalisation and dropout families: batch_norm2d (with its running buffers and its fused
// gradient batch_norm2d_backward) and dropout.
#include <gtest/gtest.h>

#include <cmath>

#include "test_util.h"
#include "typed_calls.h"

namespace dg {
namespace {

using test::expect_gradients_ok;
using test::f64;
using test::ThrowsError;
using test::ValuesNear;

std::vector<double> values(const Tensor& t) {
  const auto v = t.values<double>();
  return {v.begin(), v.end()};
}

// x [2,2,1,3] and the parameters of one batch norm; the expected numbers are
// torch.nn.functional.batch_norm's (PyTorch 1.13, float64).
struct BatchNormInputs {
  Tensor x = f64({-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 4.0, 3.5, 4.0, 4.5}, {2, 2, 1, 3});
  Tensor weight = f64({1.5, -0.5}, {2}), bias = f64({0.25, 1.0}, {2});
  Tensor running_mean = f64({0.1, -0.2}, {2}), running_var = f64({1.0, 2.0}, {2});
  Var apply(bool training) const {
    return batch_norm2d(x, weight, bias, running_mean, running_var, {.training = training});
  }
};

TEST(BatchNorm2d, TrainingNormalisesWithTheBatchAndUpdatesTheBuffers) {
  BatchNormInputs in;
  EXPECT_TRUE(ValuesNear(
      in.apply(true), {2, 2, 1, 3},
      {-1.5605267378, -1.1427128752, -0.7248990127, 1.64326619, 1.4824496425, 1.321633095,
       0.9463564376, 1.3641703002, 2.6176118879, 0.678366905, 0.5175503575, 0.35673381},
      1e-9));
  // momentum 0.1: 0.9 * old + 0.1 * batch mean, and the unbiased batch variance (n = 6).
  EXPECT_TRUE(ValuesNear(in.running_mean, {2}, {0.2066666666666667, 0.07}, 1e-12));
  EXPECT_TRUE(ValuesNear(in.running_var, {2}, {1.2866666666666666, 2.09}, 1e-12));
}

TEST(BatchNorm2d, EvaluationUsesTheBuffersAndLeavesThemAlone) {
  BatchNormInputs in;
  EXPECT_TRUE(ValuesNear(
      in.apply(false), {2, 2, 1, 3},
      {-1.3999917501, -0.6499955000, 0.1000007500, 0.7525132453, 0.5757369919, 0.3989607386,
       3.0999857501, 3.8499820001, 6.0999707502, -0.3081442748, -0.4849205282, -0.6616967816},
      1e-9));
  EXPECT_TRUE(ValuesNear(in.running_mean, {2}, {0.1, -0.2}));
  EXPECT_TRUE(ValuesNear(in.running_var, {2}, {1.0, 2.0}));
}

// The fused gradient equals the engine's gradient of the same formulas written with registered
// ops (the second-order path), on a shape large enough to split the channels across threads.
TEST(BatchNorm2d, FusedGradientsMatchTheCompositeForm) {
  const Tensor x = test::rand64({4, 5, 6, 7}, 1, -2, 3), g = test::rand64({4, 5, 6, 7}, 2);
  const Tensor w = test::rand64({5}, 3), b = test::rand64({5}, 4);
  // First order: the fused op; under create_graph: the composite, recorded.
  std::vector<Var> fused, composite;
  {
    Tape tape;
    Var xv = variable(x), wv = variable(w), bv = variable(b);
    Var y = batch_norm2d(xv, wv, bv, Tensor::zeros({5}, DType::f64), Tensor::ones({5}, DType::f64));
    fused = grad({y}, {xv, wv, bv}, {Var(g)});
  }
  {
    Tape tape;
    Var xv = variable(x), wv = variable(w), bv = variable(b);
    Var y = batch_norm2d(xv, wv, bv, Tensor::zeros({5}, DType::f64), Tensor::ones({5}, DType::f64));
    composite = grad({y}, {xv, wv, bv}, {Var(g)}, {.create_graph = true});
  }
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(
        ValuesNear(fused[i].value(), composite[i].shape(), values(composite[i].value()), 1e-10))
        << "input " << i;
}

TEST(BatchNorm2d, GradientsAndSecondDerivatives) {
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    expect_gradients_ok(
        [training](const std::vector<Var>& v) {
          return std::vector<Var>{
              batch_norm2d(v[0], v[1], v[2], v[3], v[4], {.training = training, .eps = 1e-3})};
        },
        {test::rand64({2, 3, 2, 3}, 5), test::rand64({3}, 6), test::rand64({3}, 7),
         test::rand64({3}, 8), test::rand64({3}, 9, 0.5, 2)},
        true, {.wrt = {true, true, true, false, false}});
  }
}

TEST(BatchNorm2d, NoGradientFlowsIntoTheBuffers) {
  Tape tape;
  BatchNormInputs in;
  Var x = variable(in.x), mean = variable(in.running_mean), var = variable(in.running_var);
  Var y = batch_norm2d(x, in.weight, in.bias, mean, var, {.training = false});
  const std::vector<Var> g = grad(sum(y), {x, mean, var});
  EXPECT_TRUE(ValuesNear(g[1], {2}, {0, 0}));  // "does not depend on": zeros
  EXPECT_TRUE(ValuesNear(g[2], {2}, {0, 0}));
}

TEST(BatchNorm2d, ErrorsNameTheRule) {
  BatchNormInputs in;
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)batch_norm2d(in.x, f64({1, 2, 3}, {3}), in.bias, in.running_mean, in.running_var);
      },
      {"batch_norm2d at ",
       "weight must be [C] = [2] for x [2,2,1,3] (one value per channel), got [3]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)batch_norm2d(f64({1, 2}, {1, 2, 1, 1}), in.weight, in.bias, in.running_mean,
                           in.running_var);
      },
      {"batch_norm2d at ", "training needs more than one value per channel", "N*H*W = 1"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)batch_norm2d(f64({1, 2}, {2, 1}), in.weight, in.bias, in.running_mean,
                           in.running_var);
      },
      {"batch_norm2d at ", "x must be 4-D [N,C,H,W], got [2,1]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)batch_norm2d(in.x, in.weight, in.bias, in.running_mean, in.running_var,
                           {.momentum = 1.5});
      },
      {"batch_norm2d at ", "momentum must be in [0, 1], got 1.5"}));
}

// ---- dropout ----------------------------------------------------------------------------------

TEST(Dropout, KeepsAboutOneMinusPAndScalesTheKeptValues) {
  const Tensor x = Tensor::ones({100, 100}, DType::f64);
  const Tensor y = dropout(x, {.p = 0.3, .seed = 11}).value();
  int64_t kept = 0;
  for (double v : y.values<double>()) {
    EXPECT_TRUE(v == 0.0 || std::abs(v - 1 / 0.7) < 1e-12) << v;
    kept += v != 0.0;
  }
  // 10,000 draws: the kept fraction is 0.7 within 5 standard deviations (0.0046 each).
  EXPECT_NEAR(static_cast<double>(kept) / 10000, 0.7, 0.023);
}

TEST(Dropout, TheMaskIsAFunctionOfTheSeed) {
  const Tensor x = test::rand64({4, 50}, 1);
  const Tensor a = dropout(x, {.seed = 5}).value(), b = dropout(x, {.seed = 5}).value(),
               c = dropout(x, {.seed = 6}).value();
  EXPECT_TRUE(ValuesNear(a, {4, 50}, values(b), 0));
  EXPECT_FALSE(ValuesNear(a, {4, 50}, values(c), 0));
}

TEST(Dropout, IdentityWhenNotTrainingOrPIsZeroAndZerosWhenPIsOne) {
  const Tensor x = test::rand64({3, 4}, 2);
  EXPECT_TRUE(ValuesNear(dropout(x, {.training = false}), {3, 4}, values(x), 0));
  EXPECT_TRUE(ValuesNear(dropout(x, {.p = 0.0}), {3, 4}, values(x), 0));
  EXPECT_TRUE(ValuesNear(dropout(x, {.p = 1.0}), {3, 4}, std::vector<double>(12, 0.0), 0));
  EXPECT_TRUE(ThrowsError([&] { (void)dropout(x, {.p = 1.5}); },
                          {"dropout at ", "p must be a probability in [0, 1], got 1.5"}));
}

// The gradient goes through the same mask: dx = g where kept (scaled), 0 where dropped.
TEST(Dropout, GradientUsesTheSameMask) {
  Tape tape;
  Var x = variable(test::rand64({5, 6}, 3));
  Var y = dropout(x, {.p = 0.5, .seed = 9});
  const Tensor dx = grad(sum(y), {x})[0].value();
  for (int64_t i = 0; i < 30; ++i)
    EXPECT_EQ(dx.values<double>()[i], y.value().values<double>()[i] == 0 ? 0.0 : 2.0) << i;
  expect_gradients_ok(
      [](const std::vector<Var>& v) {
        return std::vector<Var>{dropout(v[0], {.p = 0.25, .seed = 4})};
      },
      {test::rand64({3, 4}, 4)});
}

}  // namespace

namespace typed_calls_norm {
using Vars = std::vector<Var>;
const bool listed = dg::test::list_typed_calls({
    {"batch_norm2d",
     [](const Vars& in, const Attrs& a) {
       return Vars{batch_norm2d(in[0], in[1], in[2], in[3], in[4],
                                {.training = a.boolean("training"),
                                 .momentum = a.real("momentum"),
                                 .eps = a.real("eps")})};
     }},
    {"batch_norm2d_backward",
     [](const Vars& in, const Attrs& a) {
       return batch_norm2d_backward(in[0], in[1], in[2], a.real("eps"));
     }},
    {"dropout",
     [](const Vars& in, const Attrs& a) {
       return Vars{dropout(
           in[0],
           {.p = a.real("p"), .training = a.boolean("training"), .seed = a.integer("seed")})};
     }},
});
}  // namespace typed_calls_norm
}  // namespace dg
