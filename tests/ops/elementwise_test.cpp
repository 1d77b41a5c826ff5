// The elementwise family: add, sub, mul, div (broadcasting), neg, add_scalar, mul_scalar, exp,
// log, relu, relu_backward, elu, elu_grad, sigmoid, tanh.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "deltagraph/deltagraph.h"
#include "test_util.h"
#include "typed_calls.h"

using dg::DType;
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

struct ShapePair {
  Shape a, b;
};

// Same shapes, broadcasting on either side, a scalar, and both sides broadcasting at once.
const std::vector<ShapePair> kBinaryShapes = {
    {{2, 3}, {2, 3}}, {{2, 3, 4}, {3, 1}}, {{4}, {2, 1, 4}},    {{}, {2, 3}},
    {{2, 3}, {}},     {{2, 1}, {1, 3}},    {{3, 1, 2}, {4, 1}},
};

std::string label(const char* op, const ShapePair& p) {
  return fmt::format("{} {} {}", op, p.a, p.b);
}

using Binary = Var (*)(const Var&, const Var&, dg::Loc);

void check_binary(const char* name, Binary op, bool b_away_from_zero) {
  uint64_t seed = 100;
  for (const ShapePair& p : kBinaryShapes) {
    Tensor a = dg::test::rand64(p.a, ++seed);
    Tensor b =
        b_away_from_zero ? dg::test::away_from_zero(p.b, ++seed) : dg::test::rand64(p.b, ++seed);
    Fn f = [op](const Vars& v) { return Vars{op(v[0], v[1], dg::Loc::current())}; };
    SCOPED_TRACE(label(name, p));
    expect_gradients_ok(f, {a, b});
  }
  // The same value on both sides.
  Fn self = [op](const Vars& v) { return Vars{op(v[0], v[0], dg::Loc::current())}; };
  SCOPED_TRACE(fmt::format("{}(x, x)", name));
  expect_gradients_ok(self, {dg::test::away_from_zero({2, 3}, 7)});
}

}  // namespace

// ---- forward values ---------------------------------------------------------------------

TEST(Elementwise, AddForward) {
  EXPECT_TRUE(ValuesNear(dg::add(in({1, 2, 3}, {3}), in({10, 20, 30}, {3})), {3}, {11, 22, 33}));
  EXPECT_TRUE(ValuesNear(dg::add(in({1, 2}, {2, 1}), in({10, 20, 30}, {3})), {2, 3},
                         {11, 21, 31, 12, 22, 32}));
  EXPECT_TRUE(ValuesNear(dg::add(in({5}, {}), in({1, 2}, {2})), {2}, {6, 7}));
  EXPECT_TRUE(ValuesNear(dg::add(in({1}, {}), in({2}, {})), {}, {3}));
  // [2,3,4] + [3,1]: b[j] is added along the last axis.
  Tensor a = Tensor::arange(24, DType::f64).reshape({2, 3, 4});
  Var y = dg::add(dg::input(a), in({100, 200, 300}, {3, 1}));
  EXPECT_EQ(y.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(y.value().at(0), 100);
  EXPECT_EQ(y.value().at(5), 205);   // [0,1,1]
  EXPECT_EQ(y.value().at(23), 323);  // [1,2,3]
  EXPECT_EQ(y.value().at(13), 113);  // [1,0,1]
}

TEST(Elementwise, SubMulDivForward) {
  EXPECT_TRUE(ValuesNear(dg::sub(in({5, 3}, {2}), in({1, 4}, {2})), {2}, {4, -1}));
  EXPECT_TRUE(ValuesNear(dg::sub(in({5, 3}, {2}), in({1}, {1})), {2}, {4, 2}));
  EXPECT_TRUE(ValuesNear(dg::mul(in({1, 2, 3, 4}, {2, 2}), in({10, 100}, {2})), {2, 2},
                         {10, 200, 30, 400}));
  // [4] * [2,1,4]
  Var m = dg::mul(in({1, 2, 3, 4}, {4}), in({1, 1, 1, 1, -1, 0, 2, 1}, {2, 1, 4}));
  EXPECT_TRUE(ValuesNear(m, {2, 1, 4}, {1, 2, 3, 4, -1, 0, 6, 4}));
  EXPECT_TRUE(ValuesNear(dg::div(in({1, 4}, {2}), in({2, 8}, {2})), {2}, {0.5, 0.5}));
  EXPECT_TRUE(ValuesNear(dg::div(in({6, 9}, {2}), in({3, 1.5}, {2, 1})), {2, 2}, {2, 3, 4, 6}));
}

TEST(Elementwise, UnaryArithmeticForward) {
  Var x = in({-1.5, 0, 2}, {3});
  EXPECT_TRUE(ValuesNear(dg::neg(x), {3}, {1.5, 0, -2}));
  EXPECT_TRUE(ValuesNear(dg::add_scalar(x, 2.5), {3}, {1, 2.5, 4.5}));
  EXPECT_TRUE(ValuesNear(dg::mul_scalar(x, -2), {3}, {3, 0, -4}));
  EXPECT_TRUE(ValuesNear(dg::exp(x), {3}, {std::exp(-1.5), 1, std::exp(2.0)}));
  EXPECT_TRUE(ValuesNear(dg::log(in({1, std::exp(1.0), 0.5}, {3})), {3}, {0, 1, std::log(0.5)}));
  EXPECT_TRUE(std::isinf(dg::log(in({0}, {1})).value().at(0)));
}

TEST(Elementwise, OperatorsMatchOps) {
  Var a = in({1, 2}, {2}), b = in({4, 8}, {2});
  EXPECT_TRUE(ValuesNear(a + b, {2}, {5, 10}));
  EXPECT_TRUE(ValuesNear(a - b, {2}, {-3, -6}));
  EXPECT_TRUE(ValuesNear(a * b, {2}, {4, 16}));
  EXPECT_TRUE(ValuesNear(a / b, {2}, {0.25, 0.25}));
  EXPECT_TRUE(ValuesNear(-a, {2}, {-1, -2}));
  EXPECT_TRUE(ValuesNear(a + 1.0, {2}, {2, 3}));
  EXPECT_TRUE(ValuesNear(1.0 + a, {2}, {2, 3}));
  EXPECT_TRUE(ValuesNear(a - 1.0, {2}, {0, 1}));
  EXPECT_TRUE(ValuesNear(1.0 - a, {2}, {0, -1}));
  EXPECT_TRUE(ValuesNear(a * 3.0, {2}, {3, 6}));
  EXPECT_TRUE(ValuesNear(3.0 * a, {2}, {3, 6}));
  EXPECT_TRUE(ValuesNear(a / 4.0, {2}, {0.25, 0.5}));
  // A Tensor converts to a constant Var.
  EXPECT_TRUE(ValuesNear(a + f64({1, 1}, {2}), {2}, {2, 3}));
}

TEST(Elementwise, ActivationsForward) {
  Var x = in({-2, 0, 3}, {3});
  EXPECT_TRUE(ValuesNear(dg::relu(x), {3}, {0, 0, 3}));
  EXPECT_TRUE(
      ValuesNear(dg::relu_backward(in({5, 6, 7}, {3}), in({-1, 0, 2}, {3})), {3}, {0, 0, 7}));
  EXPECT_TRUE(ValuesNear(dg::elu(x), {3}, {std::exp(-2.0) - 1, 0, 3}));
  EXPECT_TRUE(ValuesNear(dg::elu(x, 0.5), {3}, {0.5 * (std::exp(-2.0) - 1), 0, 3}));
  EXPECT_TRUE(ValuesNear(dg::elu_grad(in({-1, 0, -0.0, 2}, {4}), 0.5), {4},
                         {0.5 * std::exp(-1.0), 0.5, 0.5, 1}));
  EXPECT_TRUE(
      ValuesNear(dg::sigmoid(x), {3}, {1 / (1 + std::exp(2.0)), 0.5, 1 / (1 + std::exp(-3.0))}));
  EXPECT_TRUE(ValuesNear(dg::tanh(x), {3}, {std::tanh(-2.0), 0, std::tanh(3.0)}));
}

TEST(Elementwise, Float32ForwardKeepsDtype) {
  Var a = dg::input(Tensor::from(std::vector<float>{1, -2, 3}, {3}));
  Var b = dg::input(Tensor::from(std::vector<float>{2}, {1}));
  for (const Var& y :
       {dg::add(a, b), dg::sub(a, b), dg::mul(a, b), dg::div(a, b), dg::neg(a), dg::exp(a),
        dg::relu(a), dg::elu(a), dg::sigmoid(a), dg::tanh(a), dg::add_scalar(a, 1),
        dg::mul_scalar(a, 2), dg::elu_grad(a), dg::relu_backward(a, a)})
    EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_TRUE(ValuesNear(dg::mul(a, b), {3}, {2, -4, 6}));
  EXPECT_TRUE(ValuesNear(dg::relu(a), {3}, {1, 0, 3}));
}

TEST(Elementwise, LargeBroadcastMatchesNaive) {
  // Big enough for the parallel path; checked element by element.
  Tensor a = dg::test::rand64({64, 33, 17}, 1), b = dg::test::rand64({33, 1}, 2);
  Var y = dg::mul(dg::input(a), dg::input(b));
  for (int64_t i = 0; i < y.numel(); i += 37) {
    int64_t j = (i / 17) % 33;
    ASSERT_EQ(y.value().at(i), a.at(i) * b.at(j)) << i;
  }
}

// ---- kinks and extremes -----------------------------------------------------------------

TEST(Elementwise, ReluDerivativeAtZeroIsZero) {
  dg::Tape tape;
  Var x = dg::variable(f64({-1, 0, -0.0, 2}, {4}));
  auto g = dg::grad(dg::sum(dg::relu(x)), {x});
  EXPECT_TRUE(ValuesNear(g[0], {4}, {0, 0, 0, 1}));
}

TEST(Elementwise, EluDerivativeAtZeroIsAlpha) {
  for (double alpha : {1.0, 0.5, 2.0}) {
    dg::Tape tape;
    Var x = dg::variable(f64({-1, 0, -0.0, 2}, {4}));
    auto g = dg::grad(dg::sum(dg::elu(x, alpha)), {x}, {.create_graph = true});
    EXPECT_TRUE(ValuesNear(g[0], {4}, {alpha * std::exp(-1.0), alpha, alpha, 1})) << alpha;
    // Second derivative: alpha*exp(x) on the x <= 0 branch, 0 above.
    auto g2 = dg::grad(dg::sum(g[0]), {x});
    EXPECT_TRUE(ValuesNear(g2[0], {4}, {alpha * std::exp(-1.0), alpha, alpha, 0})) << alpha;
  }
}

// torch.nn.functional.leaky_relu(x, 0.2) and the gradient of its sum, x = [-2, -0.5, 0, 1.5]:
// y = [-0.4, -0.1, 0, 1.5], dx = [0.2, 0.2, 0.2, 1] (PyTorch takes the slope at 0).
TEST(Elementwise, LeakyReluMatchesPyTorch) {
  dg::Tape tape;
  Var x = dg::variable(f64({-2, -0.5, 0, 1.5}, {4}));
  Var y = dg::leaky_relu(x, 0.2);
  EXPECT_TRUE(ValuesNear(y, {4}, {-0.4, -0.1, 0, 1.5}));
  auto g = dg::grad(dg::sum(y), {x}, {.create_graph = true});
  EXPECT_TRUE(ValuesNear(g[0], {4}, {0.2, 0.2, 0.2, 1}));
  // Piecewise linear: the second derivative is 0 everywhere.
  EXPECT_TRUE(ValuesNear(dg::grad(dg::sum(g[0]), {x})[0], {4}, {0, 0, 0, 0}));
  // The default slope is PyTorch's, 0.01.
  EXPECT_TRUE(ValuesNear(dg::leaky_relu(x), {4}, {-0.02, -0.005, 0, 1.5}));
}

TEST(Elementwise, SigmoidAndTanhAreFiniteAtExtremes) {
  for (DType dtype : {DType::f64, DType::f32}) {
    dg::Tape tape;
    Var x = dg::variable(f64({-1000, 1000, -80, 80}, {4}).to(dtype));
    Var s = dg::sigmoid(x);
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(std::isfinite(s.value().at(i))) << i;
    EXPECT_EQ(s.value().at(0), 0);
    EXPECT_EQ(s.value().at(1), 1);
    Var t = dg::tanh(x);
    EXPECT_EQ(t.value().at(0), -1);
    EXPECT_EQ(t.value().at(1), 1);
    auto g = dg::grad(dg::sum(dg::add(s, t)), {x});
    for (int i = 0; i < 4; ++i) {
      EXPECT_TRUE(std::isfinite(g[0].value().at(i))) << i;
      EXPECT_GE(g[0].value().at(i), 0);
    }
    EXPECT_EQ(g[0].value().at(0), 0);
    EXPECT_EQ(g[0].value().at(1), 0);
  }
  // Elu is finite for very negative inputs too.
  EXPECT_TRUE(ValuesNear(dg::elu(in({-1000}, {1})), {1}, {-1}));
}

// ---- gradient checks --------------------------------------------------------------------

TEST(Elementwise, AddGradients) { check_binary("add", dg::add, false); }
TEST(Elementwise, SubGradients) { check_binary("sub", dg::sub, false); }
TEST(Elementwise, MulGradients) { check_binary("mul", dg::mul, false); }
TEST(Elementwise, DivGradients) { check_binary("div", dg::div, true); }

TEST(Elementwise, UnaryGradients) {
  struct Case {
    const char* name;
    Fn f;
    bool positive;  // inputs must be > 0 (log)
  };
  std::vector<Case> cases = {
      {"neg", [](const Vars& v) { return Vars{dg::neg(v[0])}; }, false},
      {"add_scalar", [](const Vars& v) { return Vars{dg::add_scalar(v[0], 1.5)}; }, false},
      {"mul_scalar", [](const Vars& v) { return Vars{dg::mul_scalar(v[0], -2.5)}; }, false},
      {"exp", [](const Vars& v) { return Vars{dg::exp(v[0])}; }, false},
      {"log", [](const Vars& v) { return Vars{dg::log(v[0])}; }, true},
      {"relu", [](const Vars& v) { return Vars{dg::relu(v[0])}; }, false},
      {"elu", [](const Vars& v) { return Vars{dg::elu(v[0])}; }, false},
      {"elu alpha=0.3", [](const Vars& v) { return Vars{dg::elu(v[0], 0.3)}; }, false},
      {"elu_grad", [](const Vars& v) { return Vars{dg::elu_grad(v[0])}; }, false},
      {"elu_grad alpha=2", [](const Vars& v) { return Vars{dg::elu_grad(v[0], 2.0)}; }, false},
      {"sigmoid", [](const Vars& v) { return Vars{dg::sigmoid(v[0])}; }, false},
      {"tanh", [](const Vars& v) { return Vars{dg::tanh(v[0])}; }, false},
      {"operators", [](const Vars& v) { return Vars{(2.0 - v[0]) * 3.0 / 4.0 + 1.0}; }, false},
  };
  uint64_t seed = 200;
  for (const Case& c : cases)
    for (const Shape& shape : {Shape{}, Shape{5}, Shape{2, 3}, Shape{2, 1, 3, 2}}) {
      Tensor x = c.positive ? dg::test::rand64(shape, ++seed, 0.3, 2.5)
                            : dg::test::away_from_zero(shape, ++seed);
      SCOPED_TRACE(fmt::format("{} {}", c.name, shape));
      expect_gradients_ok(c.f, {x});
    }
}

TEST(Elementwise, ReluBackwardGradients) {
  // relu_backward(g, x): linear in g, piecewise constant in x.
  Fn f = [](const Vars& v) { return Vars{dg::relu_backward(v[0], v[1])}; };
  for (const Shape& shape : {Shape{4}, Shape{2, 3}}) {
    Tensor g = dg::test::rand64(shape, 300), x = dg::test::away_from_zero(shape, 301);
    SCOPED_TRACE(fmt::format("relu_backward {}", shape));
    expect_gradients_ok(f, {g, x});
  }
  // The gradient w.r.t. x is zero (not undefined).
  dg::Tape tape;
  Var g = dg::variable(f64({1, 2}, {2})), x = dg::variable(f64({-1, 1}, {2}));
  auto d = dg::grad(dg::sum(dg::relu_backward(g, x)), {g, x});
  EXPECT_TRUE(ValuesNear(d[0], {2}, {0, 1}));
  EXPECT_TRUE(ValuesNear(d[1], {2}, {0, 0}));
}

TEST(Elementwise, ComposedExpressionGradients) {
  Fn f = [](const Vars& v) {
    Var h = dg::tanh(dg::add(dg::mul(v[0], v[1]), v[2]));
    return Vars{dg::div(dg::exp(h), dg::add_scalar(dg::sigmoid(v[0]), 1.0)),
                dg::elu(dg::sub(h, v[1]))};
  };
  SCOPED_TRACE("composed");
  expect_gradients_ok(f, {dg::test::rand64({2, 3}, 400), dg::test::rand64({3}, 401),
                          dg::test::rand64({2, 1}, 402)});
}

TEST(Elementwise, GradientsMatchHandDerivatives) {
  dg::Tape tape;
  Var a = dg::variable(f64({1, 2, 3, 4, 5, 6}, {2, 3}));
  Var b = dg::variable(f64({2, 4}, {2, 1}));
  auto g = dg::grad(dg::sum(dg::div(a, b)), {a, b});
  EXPECT_TRUE(ValuesNear(g[0], {2, 3}, {0.5, 0.5, 0.5, 0.25, 0.25, 0.25}));
  // d/db sum_j a_ij / b_i = -sum_j a_ij / b_i^2
  EXPECT_TRUE(ValuesNear(g[1], {2, 1}, {-6.0 / 4, -15.0 / 16}));
  Var x = dg::variable(f64({0.5, 2}, {2}));
  auto gl = dg::grad(dg::sum(dg::log(x)), {x});
  EXPECT_TRUE(ValuesNear(gl[0], {2}, {2, 0.5}));
  Var s = dg::variable(f64({0}, {}));
  EXPECT_NEAR(dg::grad(dg::sigmoid(s), {s})[0].item(), 0.25, 1e-15);
  EXPECT_NEAR(dg::grad(dg::tanh(s), {s})[0].item(), 1, 1e-15);
}

// ---- shape-rule errors ------------------------------------------------------------------

TEST(Elementwise, BroadcastErrors) {
  Var a = in({1, 2, 3, 4, 5, 6}, {2, 3}), b = in({1, 2, 3, 4}, {4});
  EXPECT_TRUE(ThrowsExactly([&] { (void)dg::add(a, b); }, "add at ",
                            ": a is [2,3] and b is [4]; they do not broadcast: axis 1 from the "
                            "right is 3 vs 4 (sizes must match or one must be 1)"));
  EXPECT_THROW((void)dg::add(a, b), dg::ShapeError);
  Var c = Tensor::zeros({3, 3}, DType::f64);
  EXPECT_TRUE(ThrowsError([&] { (void)dg::sub(a, c); }, {"sub at ", ": a is [2,3] and b is [3,3]",
                                                         "axis 2 from the right is 2 vs 3"}));
  EXPECT_TRUE(
      ThrowsError([&] { (void)dg::mul(c, a); }, {"mul at ", ": a is [3,3] and b is [2,3]"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::div(a, b); }, {"div at ", ": a is [2,3] and b is [4]"}));
  // An operator cannot know its call site: the message starts with the op alone.
  EXPECT_TRUE(ThrowsError([&] { (void)(a + b); }, {"add: a is [2,3] and b is [4]"}));
}

TEST(Elementwise, ReluBackwardShapeError) {
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::relu_backward(in({1, 2}, {2}), in({1, 2, 3}, {3}));
      },
      "relu_backward at ", ": g is [2] and x is [3]; they must have the same shape"));
}

TEST(Elementwise, ScalarAttributeIsRequired) {
  EXPECT_TRUE(ThrowsError([] { (void)dg::call("add_scalar", {in({1}, {1})}); },
                          {"add_scalar", "missing required attribute 'c'"}));
  EXPECT_TRUE(ThrowsError([] { (void)dg::call("mul_scalar", {in({1}, {1})}); },
                          {"mul_scalar", "missing required attribute 'c'"}));
}

// ---- how each op of this family is called through its typed function ---------------------
// (tests/typed_ops_test.cpp compares each with the call by name; an op missing here fails there)

namespace typed_calls_elementwise {
using namespace dg;
using Vars = std::vector<dg::Var>;

const bool listed = dg::test::list_typed_calls({
    {"add", [](const Vars& in, const Attrs&) { return Vars{add(in[0], in[1])}; }},
    {"sub", [](const Vars& in, const Attrs&) { return Vars{sub(in[0], in[1])}; }},
    {"mul", [](const Vars& in, const Attrs&) { return Vars{mul(in[0], in[1])}; }},
    {"div", [](const Vars& in, const Attrs&) { return Vars{div(in[0], in[1])}; }},
    {"neg", [](const Vars& in, const Attrs&) { return Vars{neg(in[0])}; }},
    {"exp", [](const Vars& in, const Attrs&) { return Vars{exp(in[0])}; }},
    {"log", [](const Vars& in, const Attrs&) { return Vars{log(in[0])}; }},
    {"relu", [](const Vars& in, const Attrs&) { return Vars{relu(in[0])}; }},
    {"sigmoid", [](const Vars& in, const Attrs&) { return Vars{sigmoid(in[0])}; }},
    {"tanh", [](const Vars& in, const Attrs&) { return Vars{tanh(in[0])}; }},
    {"relu_backward",
     [](const Vars& in, const Attrs&) { return Vars{relu_backward(in[0], in[1])}; }},
    {"add_scalar",
     [](const Vars& in, const Attrs& a) { return Vars{add_scalar(in[0], a.real("c"))}; }},
    {"mul_scalar",
     [](const Vars& in, const Attrs& a) { return Vars{mul_scalar(in[0], a.real("c"))}; }},
    {"leaky_relu",
     [](const Vars& in, const Attrs& a) {
       return Vars{leaky_relu(in[0], a.real("negative_slope"))};
     }},
    {"elu", [](const Vars& in, const Attrs& a) { return Vars{elu(in[0], a.real("alpha"))}; }},
    {"elu_grad",
     [](const Vars& in, const Attrs& a) { return Vars{elu_grad(in[0], a.real("alpha"))}; }},
});
}  // namespace typed_calls_elementwise
