// The reverse-mode engine: fan-out, pruning, graph lifetime, higher order, recording scopes,
// threads, backward() accumulation, and its errors.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <thread>

#include "deltagraph/deltagraph.h"
#include "test_util.h"

using dg::DType;
using dg::Tensor;
using dg::Var;
using dg::test::f64;
using dg::test::ThrowsError;
using dg::test::ValuesNear;

namespace {

// Registers y = x (a copy) as a user op with the given VJP: the engine tests' probes.
const dg::OpDef& register_identity_op(std::string name, std::string summary, dg::VjpFn vjp) {
  return dg::register_op({
      .name = std::move(name),
      .summary = std::move(summary),
      .inputs = {{"x"}},
      .shape = [](const dg::OpCall& c) { return dg::same_as_input(c); },
      .forward =
          [](const dg::OpCall& c, std::span<const dg::TensorSpec>) {
            return std::vector<Tensor>{c.input(0).clone()};
          },
      .vjp = std::move(vjp),
      .vjp_formula = "dx = g",
  });
}

// An identity op whose VJP counts how often it runs.
std::atomic<int> counted_vjp_calls{0};

const dg::OpDef& counted_identity_op() {
  static const dg::OpDef& op = register_identity_op(
      "test_counted_identity", "y = x; its VJP counts its calls (engine tests)",
      [](const dg::VjpContext& c) -> std::vector<Var> {
        ++counted_vjp_calls;
        return {c.grad_output(0)};
      });
  return op;
}

Var counted(const Var& x) { return dg::call(counted_identity_op().name, {x})[0]; }

}  // namespace

TEST(Engine, GradOfLeafIsSeed) {
  dg::Tape tape;
  Var x = dg::variable(f64({2}, {}));
  auto g = dg::grad(x, {x});
  EXPECT_TRUE(ValuesNear(g[0], {}, {1}));
}

TEST(Engine, FanOutAccumulatesAcrossOps) {
  dg::Tape tape;
  Tensor xv = f64({0.5, -1, 2}, {3});
  Var x = dg::variable(xv);
  // x feeds two different ops: d/dx sum(3x + exp(x)) = 3 + exp(x).
  Var y = dg::sum(dg::add(dg::mul_scalar(x, 3), dg::exp(x)));
  auto g = dg::grad(y, {x});
  EXPECT_TRUE(ValuesNear(g[0], {3}, {3 + std::exp(0.5), 3 + std::exp(-1), 3 + std::exp(2)}));

  // The same value as both inputs of one op: d/dx sum(x + x) = 2.
  Var x2 = dg::variable(xv);
  auto g2 = dg::grad(dg::sum(dg::add(x2, x2)), {x2});
  EXPECT_TRUE(ValuesNear(g2[0], {3}, {2, 2, 2}));
}

TEST(Engine, MulOfSelfGivesTwoXG) {
  dg::Tape tape;
  Var x = dg::variable(f64({1, -2, 3, 0.5}, {2, 2}));
  Var y = dg::mul(x, x);
  Var g = dg::constant(f64({1, 2, -1, 4}, {2, 2}));
  auto dx = dg::grad({y}, {x}, {g});
  EXPECT_TRUE(ValuesNear(dx[0], {2, 2}, {2 * 1 * 1, 2 * -2 * 2, 2 * 3 * -1, 2 * 0.5 * 4}));
}

TEST(Engine, DiamondGraphSumsBothPaths) {
  dg::Tape tape;
  Var x = dg::variable(f64({0.3, -0.7}, {2}));
  Var h = dg::tanh(x);
  Var y = dg::sum(dg::mul(dg::exp(h), dg::sigmoid(h)));  // h reaches y along two paths
  auto g = dg::grad(y, {x});
  for (int i = 0; i < 2; ++i) {
    double xi = x.value().at(i), hi = std::tanh(xi), s = 1 / (1 + std::exp(-hi));
    double dh = std::exp(hi) * s + std::exp(hi) * s * (1 - s);
    EXPECT_NEAR(g[0].value().at(i), dh * (1 - hi * hi), 1e-12);
  }
}

TEST(Engine, UnreachableBranchesAreNotVisited) {
  dg::Tape tape;
  Var x = dg::variable(f64({1, 2}, {2}));
  Var z = dg::variable(f64({3, 4}, {2}));
  // y = sum(x * 2 + counted(z)): the counted branch does not lead to x.
  Var y = dg::sum(dg::add(dg::mul_scalar(x, 2), counted(z)));
  counted_vjp_calls = 0;
  auto gx = dg::grad(y, {x}, {.retain_graph = true});
  EXPECT_EQ(counted_vjp_calls.load(), 0);
  EXPECT_TRUE(ValuesNear(gx[0], {2}, {2, 2}));

  // Asking for z runs it exactly once.
  auto gz = dg::grad(y, {z}, {.retain_graph = true});
  EXPECT_EQ(counted_vjp_calls.load(), 1);
  EXPECT_TRUE(ValuesNear(gz[0], {2}, {1, 1}));

  // A branch hanging off an intermediate that is itself the target is not visited either.
  counted_vjp_calls = 0;
  Var h = dg::tanh(counted(x));
  Var y2 = dg::sum(dg::exp(h));
  auto gh = dg::grad(y2, {h});
  EXPECT_EQ(counted_vjp_calls.load(), 0);
  EXPECT_NEAR(gh[0].value().at(0), std::exp(h.value().at(0)), 1e-12);
}

// A pass that starts while another one walks the same graph (here: from inside a VJP, as it
// would from another thread on a retained graph) finds the nodes taken and keeps its own index;
// both passes give the right gradients.
TEST(Engine, PassesOverlappingInOneGraph) {
  static Var inner_gradient;
  static Var inner_wrt;
  static const dg::OpDef& probe = dg::register_op({
      .name = "test_overlapping_pass_probe",
      .summary = "y = 2x; its VJP differentiates x again (engine tests)",
      .inputs = {{"x"}},
      .shape = [](const dg::OpCall& c) { return dg::same_as_input(c); },
      .forward =
          [](const dg::OpCall& c, std::span<const dg::TensorSpec>) {
            Tensor y = c.input(0).clone();
            for (double& v : y.values<double>()) v *= 2;
            return std::vector<Tensor>{y};
          },
      .vjp = [](const dg::VjpContext& c) -> std::vector<Var> {
        inner_gradient = dg::grad({c.input(0)}, {inner_wrt}, {}, {.retain_graph = true})[0];
        return {dg::mul_scalar(c.grad_output(0), 2.0)};
      },
      .vjp_formula = "dx = 2 g",
  });
  dg::Param w(Tensor::scalar(3.0, DType::f64));
  inner_wrt = w;
  dg::Tape tape;
  Var a = dg::mul(w, w);  // the outer pass owns this node when the probe's VJP runs
  Var y = dg::call(probe.name, {a})[0];
  auto g = dg::grad(y, {w});
  EXPECT_DOUBLE_EQ(inner_gradient.value().item(), 6.0);  // d(w^2)/dw
  EXPECT_DOUBLE_EQ(g[0].value().item(), 12.0);           // d(2 w^2)/dw
  // Both passes handed the graph back: it can be differentiated again, by the fast path.
  Var y2 = dg::mul_scalar(dg::mul(w, w), 5.0);
  EXPECT_DOUBLE_EQ(dg::grad(y2, {w})[0].value().item(), 30.0);
  inner_gradient = Var();
  inner_wrt = Var();
}

// A pass that fails half-way leaves the retained graph usable by the next pass.
TEST(Engine, FailedPassLeavesGraphUsable) {
  static bool fail_vjp = true;
  static const dg::OpDef& flaky = register_identity_op(
      "test_flaky_vjp", "y = x; its VJP throws while fail_vjp is set (engine tests)",
      [](const dg::VjpContext& c) -> std::vector<Var> {
        if (fail_vjp) dg::fail("test_flaky_vjp: failing on purpose");
        return {c.grad_output(0)};
      });
  dg::Tape tape;
  Var x = dg::variable(f64({1, 2}, {2}));
  Var y = dg::sum(dg::call(flaky.name, {dg::mul(x, x)})[0]);
  EXPECT_TRUE(
      ThrowsError([&] { (void)dg::grad(y, {x}, {.retain_graph = true}); }, {"failing on purpose"}));
  fail_vjp = false;
  EXPECT_TRUE(ValuesNear(dg::grad(y, {x})[0], {2}, {2, 4}));
  fail_vjp = true;
}

TEST(Engine, UnrelatedWrtGetsZeros) {
  dg::Tape tape;
  Var x = dg::variable(f64({1, 2}, {2}));
  Var other = dg::variable(f64({5, 6, 7}, {3}));
  auto g = dg::grad(dg::sum(x), {x, other});
  EXPECT_TRUE(ValuesNear(g[0], {2}, {1, 1}));
  EXPECT_TRUE(ValuesNear(g[1], {3}, {0, 0, 0}));
}

TEST(Engine, FreedGraphNeedsRetainGraph) {
  dg::Tape tape;
  Var x = dg::variable(f64({1, 2}, {2}));
  Var y = dg::sum(dg::mul(x, x));
  auto g1 = dg::grad(y, {x});
  EXPECT_TRUE(ValuesNear(g1[0], {2}, {2, 4}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::grad(y, {x}); }, {"retain_graph", "freed"}));
  EXPECT_TRUE(ThrowsError([&] { dg::backward(y); }, {"retain_graph"}));
}

// An op whose VJP reads only its inputs has its outputs freed before the VJP runs, once every
// consumer's VJP has run and nothing else holds them; one that reads them keeps them; so does
// a pass that retains the graph, and an output the caller still holds.
TEST(Engine, OutputsNoVjpReadsAreFreedBeforeTheVjp) {
  static bool output_defined = false;
  auto probe = [](std::string name, bool reads_outputs) -> const dg::OpDef& {
    return dg::register_op({
        .name = std::move(name),
        .summary = "y = x; its VJP notes whether y still has its value (engine tests)",
        .inputs = {{"x"}},
        .shape = [](const dg::OpCall& c) { return dg::same_as_input(c); },
        .forward =
            [](const dg::OpCall& c, std::span<const dg::TensorSpec>) {
              return std::vector<Tensor>{c.input(0).clone()};
            },
        .vjp = [](const dg::VjpContext& c) -> std::vector<Var> {
          output_defined = c.output(0).value().defined();
          return {c.grad_output(0)};
        },
        .vjp_formula = "dx = g",
        .vjp_reads_outputs = reads_outputs,
    });
  };
  static const dg::OpDef& inputs_only = probe("test_vjp_reads_inputs_only", false);
  static const dg::OpDef& reads_outputs = probe("test_vjp_reads_outputs", true);
  auto value_seen_by_vjp = [&](const dg::OpDef& op, bool retain_graph, bool hold_output) {
    dg::Tape tape;
    Var x = dg::variable(f64({1, 2}, {2}));
    Var y = dg::call(op.name, {x})[0];
    Var loss = dg::sum(dg::mul(y, y));
    if (!hold_output) y = Var();
    output_defined = false;
    (void)dg::grad(loss, {x}, {.retain_graph = retain_graph});
    return output_defined;
  };
  EXPECT_FALSE(value_seen_by_vjp(inputs_only, false, false));
  EXPECT_TRUE(value_seen_by_vjp(inputs_only, true, false));
  EXPECT_TRUE(value_seen_by_vjp(inputs_only, false, true));
  EXPECT_TRUE(value_seen_by_vjp(reads_outputs, false, false));
}

TEST(Engine, RetainGraphAllowsRepeatedPasses) {
  dg::Tape tape;
  Var x = dg::variable(f64({1, 2}, {2}));
  Var y = dg::sum(dg::mul(x, x));
  auto g1 = dg::grad(y, {x}, {.retain_graph = true});
  auto g2 = dg::grad(y, {x}, {.retain_graph = true});
  auto g3 = dg::grad(y, {x});  // the last pass may free it
  EXPECT_TRUE(ValuesNear(g1[0], {2}, {2, 4}));
  EXPECT_TRUE(ValuesNear(g2[0], {2}, {2, 4}));
  EXPECT_TRUE(ValuesNear(g3[0], {2}, {2, 4}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::grad(y, {x}); }, {"retain_graph"}));
}

TEST(Engine, SecondDerivativeOfCube) {
  dg::Tape tape;
  Tensor xv = f64({-1.5, 0.5, 2}, {3});
  Var x = dg::variable(xv);
  Var y = dg::sum(dg::mul(dg::mul(x, x), x));
  auto d1 = dg::grad(y, {x}, {.create_graph = true});
  EXPECT_TRUE(d1[0].requires_grad());  // a differentiable expression
  EXPECT_TRUE(ValuesNear(d1[0], {3}, {3 * 2.25, 3 * 0.25, 3 * 4.0}));
  auto d2 = dg::grad(dg::sum(d1[0]), {x}, {.create_graph = true});
  EXPECT_TRUE(ValuesNear(d2[0], {3}, {6 * -1.5, 6 * 0.5, 6 * 2.0}));
  auto d3 = dg::grad(dg::sum(d2[0]), {x});
  EXPECT_TRUE(ValuesNear(d3[0], {3}, {6, 6, 6}));
}

TEST(Engine, CreateGraphRecordsEvenUnderNoGrad) {
  Var x = dg::variable(f64({2}, {}));
  Var d1;
  {
    dg::Tape tape;
    Var y = dg::mul(dg::mul(x, x), x);
    dg::NoGrad ng;  // the backward pass is recorded anyway when create_graph is asked
    d1 = dg::grad(y, {x}, {.create_graph = true})[0];
  }
  EXPECT_NEAR(d1.item(), 12, 1e-12);
  EXPECT_TRUE(d1.requires_grad());
  auto d2 = dg::grad(d1, {x});
  EXPECT_NEAR(d2[0].item(), 12, 1e-12);  // 6x
}

namespace {

// f(x) = sum(tanh(x W^T)), x [1,3], W [2,3]: the Hessian in x is W^T diag(-2 t (1 - t^2)) W.
std::vector<double> hessian_times(const Tensor& x, const Tensor& W, const std::vector<double>& v) {
  std::vector<double> out(3, 0.0);
  for (int j = 0; j < 2; ++j) {
    double a = 0, wv = 0;
    for (int k = 0; k < 3; ++k) {
      a += W.at(j * 3 + k) * x.at(k);
      wv += W.at(j * 3 + k) * v[k];
    }
    double t = std::tanh(a), d2 = -2 * t * (1 - t * t);
    for (int i = 0; i < 3; ++i) out[i] += W.at(j * 3 + i) * d2 * wv;
  }
  return out;
}

}  // namespace

TEST(Engine, HessianVectorProduct) {
  Tensor xv = f64({0.3, -0.8, 0.5}, {1, 3});
  Tensor Wv = f64({0.7, -0.2, 1.1, -0.9, 0.4, 0.6}, {2, 3});
  std::vector<double> v{0.5, 1.0, -2.0};
  dg::Param W(Wv, "W");
  dg::Tape tape;
  Var x = dg::variable(xv);
  Var f = dg::sum(dg::tanh(dg::linear(x, W)));
  Var g = dg::grad(f, {x}, {.create_graph = true})[0];
  Var hv = dg::grad({g}, {x}, {dg::constant(f64(v, {1, 3}))})[0];
  EXPECT_TRUE(ValuesNear(hv, {1, 3}, hessian_times(xv, Wv, v), 1e-12));

  // Against central differences of the gradient along v.
  auto grad_at = [&](double eps) {
    Tensor xe = xv.clone();
    for (int i = 0; i < 3; ++i) xe.data<double>()[i] += eps * v[i];
    Var xs = dg::variable(xe);
    return dg::grad(dg::sum(dg::tanh(dg::linear(xs, W))), {xs})[0].value();
  };
  const double eps = 1e-5;
  Tensor plus = grad_at(eps), minus = grad_at(-eps);
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(hv.value().at(i), (plus.at(i) - minus.at(i)) / (2 * eps), 1e-8);

  // The mixed second derivative d/dW <g, v> is defined and finite too.
  Var f2 = dg::sum(dg::tanh(dg::linear(x, W)));
  Var g2 = dg::grad(f2, {x}, {.create_graph = true})[0];
  Var mixed = dg::grad({g2}, {W}, {dg::constant(f64(v, {1, 3}))})[0];
  EXPECT_EQ(mixed.shape(), (dg::Shape{2, 3}));
  for (double m : mixed.value().to_vector()) EXPECT_TRUE(std::isfinite(m));
}

TEST(Engine, NoGradRecordsNothing) {
  dg::Tape tape;
  Var x = dg::variable(f64({1, 2}, {2}));
  uint64_t before = tape.size();
  Var y;
  {
    dg::NoGrad ng;
    EXPECT_FALSE(dg::Tape::recording());
    y = dg::exp(x);
  }
  EXPECT_TRUE(dg::Tape::recording());
  EXPECT_EQ(y.producer(), nullptr);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(tape.size(), before);
  EXPECT_TRUE(ValuesNear(y, {2}, {std::exp(1.0), std::exp(2.0)}));
  // Recording resumes after the scope.
  Var z = dg::exp(x);
  EXPECT_NE(z.producer(), nullptr);
  EXPECT_TRUE(z.requires_grad());
  EXPECT_EQ(tape.size(), before + 1);
}

TEST(Engine, NoTapeRecordsNothing) {
  ASSERT_EQ(dg::Tape::current(), nullptr);
  EXPECT_FALSE(dg::Tape::recording());
  Var x = dg::variable(f64({1, 2}, {2}));
  EXPECT_TRUE(x.requires_grad());  // a differentiable leaf
  Var y = dg::sum(dg::mul(x, x));
  EXPECT_EQ(y.producer(), nullptr);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_NEAR(y.item(), 5, 1e-12);
  EXPECT_TRUE(ThrowsError([&] { (void)dg::grad(y, {x}); }, {"grad", "dg::Tape"}));
  EXPECT_TRUE(ThrowsError([&] { dg::backward(y); }, {"backward", "dg::Tape"}));
}

TEST(Engine, PlainInputsAreNotRecorded) {
  dg::Tape tape;
  Var x = dg::input(f64({1, 2}, {2}));
  Var y = dg::relu(x);
  EXPECT_EQ(y.producer(), nullptr);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(tape.size(), 0u);
}

TEST(Engine, NestedTapes) {
  Var x = dg::variable(f64({0.5}, {1}));
  dg::Tape outer;
  EXPECT_EQ(dg::Tape::current(), &outer);
  Var a = dg::exp(x);
  Var inner_result;
  {
    dg::Tape inner;
    EXPECT_EQ(dg::Tape::current(), &inner);
    inner_result = dg::sum(dg::mul(a, x));
    EXPECT_EQ(inner.size(), 2u);
    // A graph spanning both tapes is differentiated as one.
    auto g = dg::grad(inner_result, {x}, {.retain_graph = true});
    EXPECT_NEAR(g[0].value().at(0), std::exp(0.5) * 0.5 + std::exp(0.5), 1e-12);
  }
  EXPECT_EQ(dg::Tape::current(), &outer);
  EXPECT_EQ(outer.size(), 1u);
  Var b = dg::tanh(x);
  EXPECT_EQ(outer.size(), 2u);
  EXPECT_NE(b.producer(), nullptr);
  // The inner tape's graph outlives the inner tape: the Vars keep it alive.
  auto g = dg::grad(inner_result, {x});
  EXPECT_NEAR(g[0].value().at(0), std::exp(0.5) * 1.5, 1e-12);
}

TEST(Engine, ThreadsHaveSeparateTapes) {
  dg::Param W(f64({0.7, -0.2, 1.1, -0.9, 0.4, 0.6}, {2, 3}), "W");
  const Tensor x1 = f64({0.3, -0.8, 0.5, 1.0, 0.2, -0.4}, {2, 3});
  const Tensor x2 = f64({-0.1, 0.9, 0.25}, {1, 3});
  dg::Tape main_tape;  // the main thread's tape must not be seen by the workers

  auto work = [&W](const Tensor& xv, std::vector<Tensor>* out, bool* ok) {
    try {
      *ok = dg::Tape::current() == nullptr;
      dg::Tape tape;
      *ok = *ok && dg::Tape::current() == &tape;
      for (int rep = 0; rep < 20; ++rep) {
        Var x = dg::variable(xv);
        Var f = dg::sum(dg::tanh(dg::linear(x, W)));
        auto g = dg::grad(f, {x, W});
        if (rep == 0) *out = {g[0].value(), g[1].value()};
        *ok = *ok && dg::allclose(g[1].value(), (*out)[1], 0, 0);
      }
      *ok = *ok && tape.size() == 20 * 3;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "worker thread: " << e.what();
      *ok = false;
    }
  };
  auto expected = [&](const Tensor& xv) {
    Var x = dg::variable(xv);
    auto g = dg::grad(dg::sum(dg::tanh(dg::linear(x, W))), {x, W});
    return std::vector<Tensor>{g[0].value(), g[1].value()};
  };
  std::vector<Tensor> r1, r2;
  bool ok1 = false, ok2 = false;
  std::thread t1(work, std::cref(x1), &r1, &ok1);
  std::thread t2(work, std::cref(x2), &r2, &ok2);
  t1.join();
  t2.join();
  EXPECT_TRUE(ok1);
  EXPECT_TRUE(ok2);
  EXPECT_EQ(main_tape.size(), 0u);  // nothing the workers did landed on this thread's tape
  auto e1 = expected(x1), e2 = expected(x2);
  ASSERT_EQ(r1.size(), 2u);
  ASSERT_EQ(r2.size(), 2u);
  EXPECT_TRUE(dg::allclose(r1[0], e1[0], 1e-14, 0));
  EXPECT_TRUE(dg::allclose(r1[1], e1[1], 1e-14, 0));
  EXPECT_TRUE(dg::allclose(r2[0], e2[0], 1e-14, 0));
  EXPECT_TRUE(dg::allclose(r2[1], e2[1], 1e-14, 0));
  EXPECT_FALSE(dg::allclose(r1[1], r2[1]));  // different expressions, different gradients
  EXPECT_FALSE(W.grad().defined());          // grad() does not touch Param::grad
}

TEST(Engine, BackwardAccumulatesIntoParamGrad) {
  dg::Param w(f64({1, 2, 3}, {3}), "w");
  const Tensor xv = f64({0.5, -1, 2}, {3});
  EXPECT_FALSE(w.grad().defined());
  EXPECT_EQ(w.kind(), dg::VarKind::param);
  EXPECT_TRUE(w.requires_grad());
  auto step = [&] {
    dg::Tape tape;
    Var loss = dg::sum(dg::mul(w, dg::input(xv)));
    dg::backward(loss);
  };
  step();
  EXPECT_TRUE(ValuesNear(w.grad(), {3}, {0.5, -1, 2}));
  step();
  EXPECT_TRUE(ValuesNear(w.grad(), {3}, {1, -2, 4}));
  w.zero_grad();
  EXPECT_FALSE(w.grad().defined());
  step();
  EXPECT_TRUE(ValuesNear(w.grad(), {3}, {0.5, -1, 2}));
}

// backward() keeps a gradient tensor without copying when nothing else holds it, and copies it
// when the caller still does: a later pass adds into .grad in place, which must never change
// the caller's tensors.
TEST(Engine, BackwardNeverAliasesACallersTensorIntoGrad) {
  dg::Param w(f64({1, 2}, {2}), "w");
  Var cotangent = dg::constant(f64({5, 7}, {2}));
  {
    dg::Tape tape;
    dg::backward(dg::mul_scalar(w, 1.0), cotangent);  // dw is the cotangent itself
  }
  EXPECT_FALSE(w.grad().shares_storage_with(cotangent.value()));
  {
    dg::Tape tape;
    dg::backward(dg::mul_scalar(w, 1.0), cotangent);
  }
  EXPECT_TRUE(ValuesNear(w.grad(), {2}, {10, 14}));
  EXPECT_TRUE(ValuesNear(cotangent, {2}, {5, 7}));  // untouched by the accumulation
  // A leaf used directly as the loss: its seed is made by the pass and nothing else holds it.
  dg::Param v(f64({3}, {}), "v");
  {
    dg::Tape tape;
    dg::backward(v);
  }
  EXPECT_TRUE(ValuesNear(v.grad(), {}, {1}));
  EXPECT_TRUE(v.grad().unique());
}

// The ready hook: once per leaf, the moment its .grad is whole, while later VJPs still run.
// A layer's weights become ready before the earlier layer's (reverse order of use), a weight
// used twice only after its second use has been differentiated, and .grad already holds the
// pass's sum (added to what was there) when the hook hears of it.
TEST(Engine, LeafGradReadyHookFiresOncePerLeafWhenItsGradientIsWhole) {
  dg::Param w1(f64({1, -2, 0.5, 3}, {2, 2}), "w1"), w2(f64({0.5, 1, -1, 2}, {2, 2}), "w2");
  dg::Param shared(f64({2, -1}, {2}), "shared"), unused(f64({1}, {1}), "unused");
  const Tensor x = f64({1, 2, -1, 0.5}, {2, 2});
  w2.mutable_grad() = f64({100, 100, 100, 100}, {2, 2});  // accumulated from an earlier pass
  std::vector<std::string> order;
  std::vector<Tensor> seen;
  {
    dg::Tape tape;
    Var h = dg::add(dg::matmul(dg::input(x), w1), shared);  // shared: first use
    Var y = dg::add(dg::matmul(dg::tanh(h), w2), shared);   // shared: second use
    (void)dg::mul_scalar(unused, 2.0);  // recorded, but the loss does not depend on it
    dg::backward(dg::sum(dg::mul(y, y)), {}, {.on_leaf_grad_ready = [&](const Var& leaf) {
                   order.push_back(leaf.name());
                   seen.push_back(leaf.grad().clone());
                 }});
  }
  ASSERT_EQ(order, (std::vector<std::string>{"w2", "shared", "w1"}));
  // What the hook saw is the final .grad, and equals a plain backward's (plus w2's 100s).
  EXPECT_TRUE(dg::allclose(seen[0], w2.grad(), 0, 0));
  EXPECT_TRUE(dg::allclose(seen[1], shared.grad(), 0, 0));
  EXPECT_TRUE(dg::allclose(seen[2], w1.grad(), 0, 0));
  dg::Param p1(w1.value().clone()), p2(w2.value().clone()), ps(shared.value().clone());
  {
    dg::Tape tape;
    Var h = dg::add(dg::matmul(dg::input(x), p1), ps);
    Var y = dg::add(dg::matmul(dg::tanh(h), p2), ps);
    dg::backward(dg::sum(dg::mul(y, y)));
  }
  EXPECT_TRUE(dg::allclose(w1.grad(), p1.grad(), 0, 0));
  EXPECT_TRUE(dg::allclose(shared.grad(), ps.grad(), 0, 0));
  EXPECT_TRUE(dg::allclose(w2.grad(), dg::add_scalar(p2.grad(), 100.0).value(), 1e-15, 0));
  EXPECT_FALSE(unused.grad().defined());
  // after_each_vjp: once per node the pass differentiates (here add, matmul, tanh, add, matmul,
  // mul, sum: 7), in grad() as in backward().
  int calls = 0;
  {
    dg::Tape tape;
    Var h = dg::add(dg::matmul(dg::input(x), w1), shared);
    Var y = dg::add(dg::matmul(dg::tanh(h), w2), shared);
    dg::grad(dg::sum(dg::mul(y, y)), {w1}, {.after_each_vjp = [&] { ++calls; }});
  }
  EXPECT_EQ(calls, 7);
}

TEST(Engine, BackwardWithCotangentAndVariables) {
  dg::Tape tape;
  dg::Param w(f64({1, 2}, {2}));
  Var v = dg::variable(f64({3, 4}, {2}));
  Var c = dg::constant(f64({10, 10}, {2}));
  Var y = dg::add(dg::mul(w, v), c);
  dg::backward(y, dg::constant(f64({1, -1}, {2})));
  EXPECT_TRUE(ValuesNear(w.grad(), {2}, {3, -4}));
  EXPECT_TRUE(ValuesNear(v.grad(), {2}, {1, -2}));  // variables accumulate as well
  EXPECT_FALSE(c.grad().defined());                 // constants never do
}

TEST(Engine, GradWithRespectToIntermediate) {
  dg::Tape tape;
  Var x = dg::variable(f64({0.2, -0.4}, {2}));
  Var h = dg::tanh(x);
  Var y = dg::sum(dg::mul(h, h));
  auto g = dg::grad(y, {h, x});
  for (int i = 0; i < 2; ++i) {
    double hi = std::tanh(x.value().at(i));
    EXPECT_NEAR(g[0].value().at(i), 2 * hi, 1e-12);
    EXPECT_NEAR(g[1].value().at(i), 2 * hi * (1 - hi * hi), 1e-12);
  }
}

TEST(Engine, SeveralOutputsWithCotangents) {
  dg::Tape tape;
  Var x = dg::variable(f64({1, 2}, {2}));
  Var a = dg::mul_scalar(x, 3);
  Var b = dg::mul(x, x);
  auto g = dg::grad({a, b}, {x}, {dg::constant(f64({1, 1}, {2})), dg::constant(f64({1, -1}, {2}))});
  EXPECT_TRUE(ValuesNear(g[0], {2}, {3 + 2, 3 - 4}));
}

TEST(Engine, Errors) {
  dg::Tape tape;
  Var x = dg::variable(f64({1, 2, 3, 4, 5, 6}, {2, 3}));
  Var y = dg::exp(x);
  EXPECT_TRUE(ThrowsError([&] { (void)dg::grad(y, {x}, {.retain_graph = true}); },
                          {"grad", "output 0", "[2,3]", "non-scalar", "cotangent"}));
  EXPECT_TRUE(ThrowsError([&] { dg::backward(y, {}, {.retain_graph = true}); },
                          {"backward", "[2,3]", "cotangent"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::grad({y}, {x}, {dg::constant(Tensor::ones({3, 2}, DType::f64))},
                       {.retain_graph = true});
      },
      {"grad", "cotangent 0", "[3,2]", "[2,3]", "must match"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::grad({y}, {x}, {dg::constant(Tensor::ones({2, 3}, DType::f32))},
                       {.retain_graph = true});
      },
      {"grad", "float32", "float64"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::grad({y, y}, {x}, {dg::constant(Tensor::ones({2, 3}, DType::f64))},
                       {.retain_graph = true});
      },
      {"2 outputs", "1 cotangents"}));
  Var c = dg::input(f64({1, 2}, {2}), "pixels");
  EXPECT_TRUE(ThrowsError([&] { (void)dg::grad(dg::sum(y), {c}, {.retain_graph = true}); },
                          {"grad", "wrt[0]", "'pixels'", "does not require a gradient"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::grad(dg::sum(y), {Var()}); }, {"wrt[0]", "undefined"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::grad(std::vector<Var>{}, {x}); }, {"no outputs"}));
  EXPECT_TRUE(ThrowsError([&] { (void)Var().value(); }, {"undefined"}));
  // Nothing was consumed by the failed calls: the graph is still usable.
  auto g = dg::grad(dg::sum(y), {x});
  EXPECT_NEAR(g[0].value().at(0), std::exp(1.0), 1e-12);
}

TEST(Engine, LeafConstructorsRejectBadValues) {
  EXPECT_TRUE(ThrowsError([] { (void)dg::variable(Tensor::zeros({2}, DType::i64)); },
                          {"variable", "int64"}));
  EXPECT_TRUE(
      ThrowsError([] { (void)dg::Param(Tensor::zeros({2}, DType::i64)); }, {"Param", "int64"}));
  EXPECT_TRUE(ThrowsError([] { (void)dg::input(Tensor()); }, {"input", "undefined"}));
  Var labels = dg::input(Tensor::zeros({2}, DType::i64), "labels");  // int64 data is fine
  EXPECT_FALSE(labels.requires_grad());
  EXPECT_EQ(labels.kind(), dg::VarKind::input);
  EXPECT_EQ(labels.name(), "labels");
  EXPECT_EQ(dg::constant(Tensor::zeros({1})).kind(), dg::VarKind::constant);
}

TEST(Engine, ProducerAndOutputMetadata) {
  dg::Tape tape;
  Var x = dg::variable(f64({1, 2}, {2}), "x");
  Var y = dg::exp(x);
  ASSERT_NE(y.producer(), nullptr);
  EXPECT_EQ(y.producer()->op->name, "exp");
  EXPECT_EQ(y.kind(), dg::VarKind::output);
  EXPECT_EQ(y.output_index(), 0);
  EXPECT_EQ(y.producer()->inputs.size(), 1u);
  EXPECT_EQ(y.producer()->inputs[0], x);
  EXPECT_GT(y.producer()->location.line(), 0u);
  EXPECT_EQ(x.producer(), nullptr);
}
