// Forward mode (dg::jvp) and the transforms built from it: hvp, jacfwd/jacrev/jacobian, hessian.
// Every op's forward mode is checked by the property harness (jvp, jvp_vjp_adjoint, jvp_rule);
// these tests check the transforms on whole functions.
#include <gtest/gtest.h>

#include "deltagraph/deltagraph.h"
#include "test_util.h"

namespace dg {
namespace {

using test::f64;
using test::ThrowsError;
using test::ValuesNear;

// A small CNN's loss as a function of its first layer's weights.
struct SmallCnn {
  Tensor x = test::rand64({2, 2, 6, 5}, 1), w2 = test::rand64({3, 4, 3, 3}, 2, -0.3, 0.3);
  Tensor labels = Tensor::from(std::vector<int64_t>{0, 2}, {2});
  Var operator()(const Var& w1) const {
    Var h = relu(conv2d(x, w1, {.padding = 1}));
    h = max_pool2d(h, {.kernel_size = 2}).values;
    h = conv2d(h, w2, {.padding = "same"});
    return softmax_xent(mean(h, {.axes = {2, 3}}), labels);
  }
};

TEST(Jvp, EqualsFiniteDifferencesAlongTheTangent) {
  const Tensor w = test::rand64({4, 2, 3, 3}, 3, -0.4, 0.4), t = test::rand64({4, 2, 3, 3}, 4);
  const SmallCnn net;
  const JvpResult r =
      jvp([&](const std::vector<Var>& in) { return std::vector<Var>{net(in[0])}; }, {w}, {t});
  ASSERT_EQ(r.outputs.size(), 1u);
  const double eps = 1e-6;
  auto at = [&](double e) {
    NoGrad no_grad;
    return net(add(w, mul_scalar(t, e))).item();
  };
  EXPECT_NEAR(r.outputs[0].item(), at(0), 1e-15);
  EXPECT_NEAR(r.tangents[0].item(), (at(eps) - at(-eps)) / (2 * eps), 1e-7);
}

TEST(Jvp, SeveralInputsAndOutputsAndAnOutputThatIgnoresThem) {
  const Tensor a = f64({1, 2, 3}, {3}), b = f64({0.5, -1, 2}, {3});
  const Tensor ta = f64({1, 0, 0}, {3}), tb = f64({0, 1, 0}, {3});
  const JvpResult r = jvp(
      [](const std::vector<Var>& in) {
        return std::vector<Var>{mul(in[0], in[1]), exp(in[1]), Var(f64({7}, {1}))};
      },
      {a, b}, {ta, tb});
  // d(a*b) = ta*b + a*tb; d(exp b) = exp(b) tb; a constant output has tangent 0.
  EXPECT_TRUE(ValuesNear(r.tangents[0], {3}, {0.5, 2, 0}));
  EXPECT_TRUE(ValuesNear(r.tangents[1], {3}, {0, std::exp(-1.0), 0}));
  EXPECT_TRUE(ValuesNear(r.tangents[2], {1}, {0}));
  EXPECT_TRUE(ThrowsError([&] { jvp([](const std::vector<Var>& in) { return in; }, {a}, {}); },
                          {"jvp: 1 primals but 0 tangents"}));
  EXPECT_TRUE(
      ThrowsError([&] { jvp([](const std::vector<Var>& in) { return in; }, {a}, {f64({1}, {1})}); },
                  {"jvp: tangent 0 is float64 [1] but primal 0 is float64 [3]"}));
}

// A user op with a VJP and no JVP rule gets forward mode from the transposed VJP.
TEST(Jvp, AUserOpWithOnlyAVjpHasForwardMode) {
  static const OpDef& cube = register_op({
      .name = "test_cube_for_jvp",
      .summary = "y = x^3",
      .inputs = {{"x"}},
      .shape = [](const OpCall& c) { return same_as_input(c); },
      .forward =
          [](const OpCall& c, std::span<const TensorSpec>) {
            Tensor y = c.input(0).clone();
            for (double& v : y.values<double>()) v = v * v * v;
            return std::vector<Tensor>{y};
          },
      .vjp = [](const VjpContext& c) -> std::vector<Var> {
        return {mul(c.grad_output(0), mul_scalar(mul(c.input(0), c.input(0)), 3.0))};
      },
  });
  const JvpResult r =
      jvp([](const std::vector<Var>& in) { return call(cube, in, make_attrs(cube, {})); },
          {f64({2, -1}, {2})}, {f64({1, 3}, {2})});
  EXPECT_TRUE(ValuesNear(r.tangents[0], {2}, {12, 9}));  // 3 x^2 t
}

TEST(Hvp, IsTheHessianTimesTheVectorForwardOverReverse) {
  // f = sum x^3: H = diag(6x).
  auto f = [](const Var& x) { return sum(mul(mul(x, x), x)); };
  const Tensor x = f64({1, 2, -1}, {3}), v = f64({1, 1, 2}, {3});
  EXPECT_TRUE(ValuesNear(hvp(f, x, v), {3}, {6, 12, -12}));
  EXPECT_TRUE(ValuesNear(hessian(f, x), {3, 3}, {6, 0, 0, 0, 12, 0, 0, 0, -6}));
  // The small CNN: H v against finite differences of the gradient.
  const SmallCnn net;
  const Tensor w = test::rand64({4, 2, 3, 3}, 5, -0.4, 0.4), t = test::rand64({4, 2, 3, 3}, 6);
  const Tensor hv = hvp(net, w, t);
  auto gradient = [&](double e) {
    Tape tape;
    Var wv = variable(add(w, mul_scalar(t, e)).value());
    return grad(net(wv), {wv})[0].value();
  };
  const double eps = 1e-5;
  const Tensor plus = gradient(eps), minus = gradient(-eps);
  for (int64_t k = 0; k < hv.numel(); ++k)
    EXPECT_NEAR(hv.at(k), (plus.at(k) - minus.at(k)) / (2 * eps), 1e-6 * (1 + std::abs(hv.at(k))))
        << "element " << k;
  EXPECT_TRUE(ThrowsError([&] { hvp([](const Var& x) { return x; }, x, v); },
                          {"hvp: f must return a scalar, got shape [3]"}));
}

TEST(Jacobian, ForwardAndReverseAgreeAndPickTheCheaperMode) {
  const Tensor A = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  // y = tanh(A x): J = diag(1 - y^2) A, shape [2] + [3].
  auto f = [&](const Var& x) { return tanh(matmul(A, reshape(x, {3, 1}))); };
  const Tensor x = f64({0.1, -0.2, 0.3}, {3});
  const Tensor forward = jacfwd(f, x), reverse = jacrev(f, x), picked = jacobian(f, x);
  EXPECT_EQ(forward.shape(), (Shape{2, 1, 3}));
  EXPECT_TRUE(allclose(forward, reverse, 1e-14, 1e-14));
  EXPECT_TRUE(allclose(picked, reverse, 1e-14, 1e-14));
  NoGrad no_grad;
  const Tensor y = f(x).value();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t k = 0; k < 3; ++k)
      EXPECT_NEAR(forward.at(i * 3 + k), (1 - y.at(i) * y.at(i)) * A.at(i * 3 + k), 1e-14);
}

}  // namespace
}  // namespace dg
