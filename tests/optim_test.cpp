// Optimisers against hand-computed updates (PyTorch's formulas), their state, and the
// learning-rate schedules.
#include <gtest/gtest.h>

#include <cmath>

#include "deltagraph/deltagraph.h"
#include "test_util.h"

using dg::DType;
using dg::Param;
using dg::Tensor;
using dg::test::f64;
using dg::test::ThrowsError;
using dg::test::ValuesNear;

namespace {

// Two steps on w0 = [1, -2] with the gradients g1 = [0.5, 0.1] then g2 = [0.5, -0.3], set by
// hand (not computed by backward) so the test checks the update rule alone. Returns w after
// each step.
template <class Optimizer, class Options>
std::vector<Tensor> two_steps(Options options) {
  Param w(f64({1.0, -2.0}, {2}), "w");
  dg::ParamList params;
  params.add("w", w);
  Optimizer opt(params, options);
  std::vector<Tensor> after;
  for (const Tensor& g : {f64({0.5, 0.1}, {2}), f64({0.5, -0.3}, {2})}) {
    w.mutable_grad() = g.clone();
    opt.step();
    after.push_back(w.value().clone());
  }
  return after;
}

TEST(SGD, PlainStepIsWeightMinusLrTimesGradient) {
  auto w = two_steps<dg::SGD>(dg::SGDOptions{.lr = 0.1});
  // w1 = w0 - 0.1 g1 = [0.95, -2.01]; w2 = w1 - 0.1 g2 = [0.90, -1.98]
  EXPECT_TRUE(ValuesNear(w[0], {2}, {0.95, -2.01}));
  EXPECT_TRUE(ValuesNear(w[1], {2}, {0.90, -1.98}));
}

TEST(SGD, MomentumWithWeightDecayMatchesHandComputation) {
  auto w = two_steps<dg::SGD>(dg::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
  // step 1: d = g1 + 0.01 w0 = [0.51, 0.08]; buf = d (first step: no dampening);
  //         w1 = w0 - 0.1 buf = [0.949, -2.008]
  // step 2: d = g2 + 0.01 w1 = [0.50949, -0.32008]; buf = 0.9 buf + d = [0.96849, -0.24808];
  //         w2 = w1 - 0.1 buf = [0.852151, -1.983192]
  EXPECT_TRUE(ValuesNear(w[0], {2}, {0.949, -2.008}));
  EXPECT_TRUE(ValuesNear(w[1], {2}, {0.852151, -1.983192}));
}

TEST(SGD, NesterovMatchesHandComputation) {
  auto w = two_steps<dg::SGD>(
      dg::SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 0.01});
  // step 1: d = [0.51, 0.08]; buf = d; step d + 0.9 buf = [0.969, 0.152]; w1 = [0.9031, -2.0152]
  // step 2: d = g2 + 0.01 w1 = [0.509031, -0.320152]; buf = 0.9 [0.51, 0.08] + d
  //         = [0.968031, -0.248152]; step d + 0.9 buf = [1.3802589, -0.5434888];
  //         w2 = [0.76507411, -1.96085112]
  EXPECT_TRUE(ValuesNear(w[0], {2}, {0.9031, -2.0152}));
  EXPECT_TRUE(ValuesNear(w[1], {2}, {0.76507411, -1.96085112}));
}

TEST(SGD, DampeningScalesOnlyLaterGradients) {
  auto w = two_steps<dg::SGD>(dg::SGDOptions{.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
  // buf1 = g1 = [0.5, 0.1]; w1 = [0.95, -2.01]; buf2 = 0.9 buf1 + 0.5 g2 = [0.7, -0.06];
  // w2 = [0.88, -2.004]
  EXPECT_TRUE(ValuesNear(w[1], {2}, {0.88, -2.004}));
}

TEST(Adam, FirstStepMovesEachWeightByLrAgainstTheGradientSign) {
  auto w = two_steps<dg::Adam>(dg::AdamOptions{.lr = 0.1});
  // t=1: m = 0.1 g, v = 0.001 g^2; bias-corrected m/(1-0.9) = g, v/(1-0.999) = g^2, so the
  // step is lr * g / (|g| + eps) = 0.1 * sign(g) (minus a 1e-8 relative eps effect).
  EXPECT_TRUE(ValuesNear(w[0], {2}, {0.900000002, -2.09999999}, 1e-12));
  // t=2, element 0 (g = 0.5 again): m/(1-0.81) = 0.5, v/(1-0.998001) = 0.25: again 0.1.
  // element 1: m = 0.9*0.01 + 0.1*(-0.3) = -0.021 -> /0.19 = -0.1105263;
  //            v = 0.999*1e-5 + 0.001*0.09 = 9.999e-5 -> /0.001999 = 0.0500200;
  //            w = -2.1 - 0.1 * (-0.1105263) / sqrt(0.0500200) = -2.0505810
  EXPECT_TRUE(ValuesNear(w[1], {2}, {0.800000004, -2.0505810088799348}, 1e-12));
}

TEST(Adam, L2WeightDecayAddsToTheGradient) {
  auto w = two_steps<dg::Adam>(dg::AdamOptions{.lr = 0.1, .weight_decay = 0.1});
  // t=1: g = g1 + 0.1 w0 = [0.6, -0.1]: steps by 0.1 * sign(g) -> [0.9, -1.9]
  EXPECT_TRUE(ValuesNear(w[0], {2}, {0.9000000016666666, -1.900000009999999}, 1e-12));
  EXPECT_TRUE(ValuesNear(w[1], {2}, {0.8000473404883315, -1.8136956743095183}, 1e-12));
}

TEST(Adam, DecoupledWeightDecayShrinksTheWeightFirst) {
  auto w = two_steps<dg::Adam>(
      dg::AdamOptions{.lr = 0.1, .weight_decay = 0.1, .decoupled_weight_decay = true});
  // AdamW, t=1: w0 * (1 - 0.1*0.1) = [0.99, -1.98], then the Adam step of 0.1*sign(g1).
  EXPECT_TRUE(ValuesNear(w[0], {2}, {0.890000002, -2.07999999}, 1e-12));
  EXPECT_TRUE(ValuesNear(w[1], {2}, {0.7811000039800006, -2.009781008979935}, 1e-12));
}

TEST(Optimizer, Float32ParametersUpdateInFloat32) {
  Param w(dg::test::f32({1.0f, -2.0f}, {2}), "w");
  dg::SGD opt(std::vector<Param>{w}, {.lr = 0.5});
  w.mutable_grad() = dg::test::f32({1.0f, 1.0f}, {2});
  const void* storage = w.value().raw();
  opt.step();
  EXPECT_EQ(w.dtype(), DType::f32);
  EXPECT_EQ(w.value().raw(), storage) << "the update must be in place";
  EXPECT_TRUE(ValuesNear(w, {2}, {0.5, -2.5}));
}

TEST(Optimizer, ParametersWithoutGradientAreSkipped) {
  dg::ParamList params;
  Param a = params.add("a", f64({1.0}, {1}));
  Param b = params.add("b", f64({1.0}, {1}));
  dg::Adam opt(params, {.lr = 0.1});
  a.mutable_grad() = f64({1.0}, {1});
  opt.step();
  EXPECT_TRUE(ValuesNear(b, {1}, {1.0}));
  EXPECT_LT(a.item(), 1.0);
  dg::TensorMap state = opt.state();
  EXPECT_TRUE(state.contains("a.exp_avg"));
  EXPECT_FALSE(state.contains("b.exp_avg")) << "b never stepped, so it has no state";
  EXPECT_EQ(state.at("a.step").item(), 1);
}

TEST(Optimizer, StepsTheGradientsOfBackward) {
  // loss = sum(w * w) / 2 has gradient w, so one plain SGD step gives w (1 - lr).
  dg::ParamList params;
  Param w = params.add("w", f64({2.0, -4.0}, {2}));
  dg::SGD opt(params, {.lr = 0.25});
  {
    dg::Tape tape;
    dg::backward(dg::sum(w * w) * 0.5);
  }
  opt.step();
  EXPECT_TRUE(ValuesNear(w, {2}, {1.5, -3.0}));
  opt.zero_grad();
  EXPECT_FALSE(w.grad().defined());
}

TEST(Optimizer, StateRoundTripContinuesTheSameTrajectory) {
  for (const bool adam : {false, true}) {
    SCOPED_TRACE(adam ? "adam" : "sgd");
    auto make = [&](dg::ParamList& p) -> std::unique_ptr<dg::Optimizer> {
      if (adam) return std::make_unique<dg::Adam>(p, dg::AdamOptions{.lr = 0.1});
      return std::make_unique<dg::SGD>(p, dg::SGDOptions{.lr = 0.1, .momentum = 0.9});
    };
    dg::ParamList p1, p2;
    Param w1 = p1.add("w", f64({1.0, -2.0}, {2}));
    Param w2 = p2.add("w", f64({1.0, -2.0}, {2}));
    auto o1 = make(p1);
    w1.mutable_grad() = f64({0.5, 0.1}, {2});
    o1->step();
    // Copy the weights and the state into a fresh optimiser, then take the same step on both.
    w2.mutable_value() = w1.value().clone();
    auto o2 = make(p2);
    o2->load_state(o1->state());
    w1.mutable_grad() = f64({0.5, -0.3}, {2});
    w2.mutable_grad() = f64({0.5, -0.3}, {2});
    o1->step();
    o2->step();
    EXPECT_EQ(w1.value().to_vector(), w2.value().to_vector());
  }
}

TEST(Optimizer, LoadStateRejectsForeignOrMisshapenState) {
  dg::ParamList params;
  params.add("fc.weight", f64({1.0, 2.0}, {2}));
  dg::SGD sgd(params, {.lr = 0.1, .momentum = 0.9});
  EXPECT_TRUE(ThrowsError(
      [&] {
        sgd.load_state({{"fc.bias.momentum_buffer", f64({0.0}, {1})}});
      },
      {"SGD::load_state", "'fc.bias.momentum_buffer'", "does not belong"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        sgd.load_state({{"fc.weight.momentum_buffer", f64({0.0, 0.0, 0.0}, {3})}});
      },
      {"'fc.weight.momentum_buffer' must be float64 [2] but is float64 [3]"}));
  dg::Adam adam(params);
  EXPECT_TRUE(ThrowsError(
      [&] {
        adam.load_state({{"fc.weight.exp_avg", f64({0.0, 0.0}, {2})}});
      },
      {"has some state but no 'fc.weight.exp_avg_sq'"}));
}

TEST(Optimizer, RejectsBadHyperparameters) {
  dg::ParamList params;
  params.add("w", f64({1.0}, {1}));
  EXPECT_TRUE(ThrowsError([&] { dg::SGD(params, {.lr = 0.1, .nesterov = true}); },
                          {"Nesterov momentum needs momentum > 0"}));
  EXPECT_TRUE(ThrowsError([&] { dg::SGD(params, {.lr = -1}); }, {"learning rate", "-1"}));
  EXPECT_TRUE(ThrowsError([&] { dg::Adam(params, {.beta1 = 1.0}); }, {"beta1 must be in [0, 1)"}));
  dg::ParamList ints;
  EXPECT_TRUE(ThrowsError([&] { ints.add("i", Tensor::zeros({2}, DType::i64)); },
                          {"only float32/float64 values can be differentiated"}));
}

TEST(Optimizer, GradientOfWrongShapeIsAnError) {
  Param w(f64({1.0, 2.0}, {2}), "w");
  dg::SGD opt(std::vector<Param>{w});
  w.mutable_grad() = f64({1.0}, {1});
  EXPECT_TRUE(ThrowsError(
      [&] { opt.step(); },
      {"SGD::step", "gradient of 'w' is float64 [1] but the parameter is float64 [2]"}));
}

TEST(Schedules, StepLRDividesEveryStepEpochs) {
  dg::StepLR schedule(0.1, 3, 0.5);
  EXPECT_DOUBLE_EQ(schedule(0), 0.1);
  EXPECT_DOUBLE_EQ(schedule(2), 0.1);
  EXPECT_DOUBLE_EQ(schedule(2.9), 0.1);
  EXPECT_DOUBLE_EQ(schedule(3), 0.05);
  EXPECT_DOUBLE_EQ(schedule(7), 0.025);
  EXPECT_TRUE(ThrowsError([] { dg::StepLR(0.1, 0); }, {"step_epochs must be at least 1"}));
}

TEST(Schedules, CosineLRAnnealsFromBaseToMin) {
  dg::CosineLR schedule(1.0, 10, 0.1);
  EXPECT_DOUBLE_EQ(schedule(0), 1.0);
  EXPECT_NEAR(schedule(5), 0.55, 1e-15);                                        // halfway: the mean
  EXPECT_NEAR(schedule(2.5), 0.1 + 0.9 * (1 + std::cos(M_PI / 4)) / 2, 1e-15);  // fractional epoch
  EXPECT_NEAR(schedule(10), 0.1, 1e-15);
  EXPECT_NEAR(schedule(12), 0.1, 1e-15);  // stays at the minimum after the end
  EXPECT_TRUE(ThrowsError([] { dg::CosineLR(0.1, 0); }, {"total_epochs must be > 0"}));
}

TEST(Schedules, SetLrChangesTheNextSteps) {
  Param w(f64({1.0}, {1}), "w");
  dg::SGD opt(std::vector<Param>{w}, {.lr = 1.0});
  dg::StepLR schedule(1.0, 1, 0.5);
  opt.set_lr(schedule(1));
  w.mutable_grad() = f64({1.0}, {1});
  opt.step();
  EXPECT_TRUE(ValuesNear(w, {1}, {0.5}));
  EXPECT_DOUBLE_EQ(opt.lr(), 0.5);
}

}  // namespace
