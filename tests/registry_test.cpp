// The op registry: the generic call by name, attribute and input validation, the op list, and
// ops registered from outside the library.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "deltagraph/deltagraph.h"
#include "test_util.h"

using dg::DType;
using dg::Tensor;
using dg::Var;
using dg::test::f64;
using dg::test::Passed;
using dg::test::ThrowsError;
using dg::test::ValuesNear;

namespace {

// A user op defined outside the library: y = x^3, its VJP 3 x^2 g written with registered ops.
template <class T>
void cube_kernel(const Tensor& x, Tensor& y) {
  const T* px = x.data<T>();
  T* py = y.data<T>();
  for (int64_t i = 0; i < x.numel(); ++i) py[i] = px[i] * px[i] * px[i];
}

dg::OpDef cube_def() {
  return {
      .name = "cube",
      .summary = "y = x^3",
      .inputs = {{"x"}},
      .shape = [](const dg::OpCall& c) { return dg::same_as_input(c); },
      .forward =
          [](const dg::OpCall& c, std::span<const dg::TensorSpec> specs) {
            Tensor y(specs[0].shape, specs[0].dtype);
            if (y.dtype() == DType::f64)
              cube_kernel<double>(c.input(0), y);
            else
              cube_kernel<float>(c.input(0), y);
            return std::vector<Tensor>{y};
          },
      .vjp = [](const dg::VjpContext& c) -> std::vector<Var> {
        const Var& x = c.input(0);
        return {dg::mul_scalar(dg::mul(c.grad_output(0), dg::mul(x, x)), 3.0)};
      },
      .vjp_formula = "dx = 3 x^2 g",
  };
}

const dg::OpDef& cube_op() {
  static const dg::OpDef& op = dg::register_op(cube_def());
  return op;
}

Var cube(const Var& x) {
  cube_op();
  return dg::call("cube", {x})[0];
}

// A user op without a VJP: not differentiable.
const dg::OpDef& floor_op() {
  static const dg::OpDef& op = dg::register_op({
      .name = "test_floor",
      .summary = "y = floor(x), not differentiable",
      .inputs = {{"x"}},
      .shape = [](const dg::OpCall& c) { return dg::same_as_input(c); },
      .forward =
          [](const dg::OpCall& c, std::span<const dg::TensorSpec> specs) {
            Tensor y(specs[0].shape, DType::f64);
            for (int64_t i = 0; i < y.numel(); ++i)
              y.data<double>()[i] = std::floor(c.input(0).at(i));
            return std::vector<Tensor>{y.to(specs[0].dtype)};
          },
  });
  return op;
}

}  // namespace

// Every typed function against the call by name, for every op: typed_ops_test.cpp.

// A shape error names the line that called the op and the name scope it was in, whether the
// op was called through its typed function or by name: the op's own rules cannot know either.
TEST(Registry, ShapeErrorsNameTheCallSiteAndTheScope) {
  Var x = dg::input(Tensor::zeros({1, 3, 8, 8}));
  Var w = dg::input(Tensor::zeros({4, 4, 3, 3}));
  dg::Scope encoder("encoder");
  dg::Scope block("block1");
  const int typed_line = __LINE__ + 1;
  auto typed = [&] { (void)dg::conv2d(x, w); };
  const int by_name_line = __LINE__ + 1;
  auto by_name = [&] { (void)dg::call("conv2d", {x, w}); };
  const std::string rule = ": x has 3 channels but w [4,4,3,3] with groups=1 expects 4";
  EXPECT_TRUE(ThrowsError(typed, {fmt::format("conv2d at registry_test.cpp:{} in encoder/block1{}",
                                              typed_line, rule)}));
  EXPECT_TRUE(ThrowsError(
      by_name,
      {fmt::format("conv2d at registry_test.cpp:{} in encoder/block1{}", by_name_line, rule)}));
  EXPECT_THROW(typed(), dg::ShapeError);  // still a ShapeError, for code that tells them apart
  // Errors in the inputs themselves (before the shape rule) name the call site too.
  Var labels = dg::input(Tensor::zeros({1}, DType::i64));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::relu(labels); }, {"relu at registry_test.cpp:",
                                                            " in encoder/block1: input 'x' must be "
                                                            "float32 or float64, got int64 [1]"}));
}

TEST(Registry, CallByNameRecordsLikeTypedFunctions) {
  dg::Tape tape;
  Var x = dg::variable(f64({0.5, -1}, {2}));
  Var y = dg::call("tanh", {x})[0];
  ASSERT_NE(y.producer(), nullptr);
  EXPECT_EQ(y.producer()->op, &dg::find_op("tanh"));
  auto g = dg::grad(dg::sum(y), {x});
  EXPECT_NEAR(g[0].value().at(1), 1 - std::pow(std::tanh(-1.0), 2), 1e-12);
}

TEST(Registry, UnknownOpSuggestsCloseNames) {
  Var x = dg::input(f64({1}, {1}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::call("reul", {x}); },
                          {"unknown op 'reul'", "did you mean", "relu"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::call("matmull", {x, x}); }, {"'matmull'", "matmul"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::find_op("narow"); }, {"narrow"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::find_op("sigmod"); }, {"sigmoid"}));
  // Nothing close: no suggestion, but a pointer to the list.
  EXPECT_TRUE(ThrowsError([&] { (void)dg::find_op("qqqqqqqqqqqq"); },
                          {"unknown op 'qqqqqqqqqqqq'", "dg ops"}));
}

TEST(Registry, AttributeErrorsNameOpAndAttribute) {
  Var x = dg::input(f64({1, -1}, {2}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("elu", {x}, {{"alpah", 0.5}});
      },
      {"elu", "unknown attribute 'alpah'", "alpha"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("relu", {x}, {{"alpha", 0.5}});
      },
      {"relu", "unknown attribute 'alpha'", "it has none"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::call("reshape", {x}); },
                          {"reshape", "missing required attribute 'shape'"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("narrow", {x}, {{"axis", 0}, {"start", 0}});
      },
      {"narrow", "missing required attribute 'length'", "integer"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("elu", {x}, {{"alpha", "big"}});
      },
      {"elu", "attribute 'alpha'", "must be a float", "a string"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("matmul", {x, x}, {{"transpose_a", 1}});
      },
      {"matmul", "attribute 'transpose_a'", "bool", "an integer"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("narrow", {x}, {{"axis", 0.5}, {"start", 0}, {"length", 1}});
      },
      {"narrow", "attribute 'axis'", "integer", "got a float"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("reshape", {x}, {{"shape", 2}});
      },
      {"reshape", "attribute 'shape'", "list of integers"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("elu", {x}, {{"alpha", 1.0}, {"alpha", 2.0}});
      },
      {"elu", "'alpha'", "given twice"}));
}

TEST(Registry, InputErrorsNameOpAndArgument) {
  Var x = dg::input(f64({1, 2}, {1, 2}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("relu", {x, x});
      },
      {"relu", "expects 1 inputs (x)", "got 2"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::call("add", {x}); },
                          {"add", "expects 2 inputs (a, b)", "got 1"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::call("linear", {x}); },
                          {"linear", "expects 2 to 3 inputs (x, w, b?)", "got 1"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::call("linear", {x, x, x, x}); }, {"linear", "got 4"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("add", {x, Var()});
      },
      {"add", "input 'b'", "undefined"}));

  Var x32 = dg::input(Tensor::ones({1, 2}, DType::f32));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::call("add", {x32, x});
      },
      {"add", "input 'b' is float64", "'a' is float32"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::mul(x, x32); },
                          {"mul", "input 'b' is float32", "'a' is float64"}));
  Var w32 = dg::input(Tensor::ones({3, 2}, DType::f32)),
      b64 = dg::input(Tensor::ones({3}, DType::f64));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::linear(x32, w32, b64); },
                          {"linear", "input 'b' is float64", "'x' is float32"}));

  Var labels = dg::input(Tensor::zeros({1, 2}, DType::i64));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::call("relu", {labels}); },
                          {"relu", "input 'x'", "float32 or float64", "int64"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::sub(x, labels); }, {"sub", "input 'b'", "int64"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::matmul(labels, x); }, {"matmul", "input 'a'", "int64"}));
}

TEST(Registry, OpsAreListedSorted) {
  auto list = dg::ops();
  ASSERT_FALSE(list.empty());
  std::vector<std::string> names;
  for (const dg::OpDef* op : list) names.push_back(op->name);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size());
  for (const char* expected :
       {"add",        "sub",     "mul",     "div",     "neg",           "add_scalar",
        "mul_scalar", "exp",     "log",     "relu",    "relu_backward", "elu",
        "elu_grad",   "sigmoid", "tanh",    "sum",     "mean",          "broadcast_to",
        "sum_to",     "reshape", "flatten", "permute", "narrow",        "narrow_backward",
        "matmul",     "linear"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  // Every built-in op documents itself and is differentiable, unless it has no floating input
  // to differentiate (one_hot reads int64 labels only) or no differentiable output (argmax's
  // indices).
  for (const dg::OpDef* op : list) {
    if (!op->builtin) continue;  // ops other tests register
    EXPECT_FALSE(op->summary.empty()) << op->name;
    const bool has_float_input =
        std::any_of(op->inputs.begin(), op->inputs.end(),
                    [](const dg::InputSpec& in) { return in.kind != dg::InputKind::int64; });
    const bool has_differentiable_output =
        std::any_of(op->outputs.begin(), op->outputs.end(),
                    [](const dg::OutputSpec& out) { return out.differentiable; });
    if (!has_float_input || !has_differentiable_output) {
      EXPECT_FALSE(static_cast<bool>(op->vjp)) << op->name;
      continue;
    }
    EXPECT_TRUE(static_cast<bool>(op->vjp)) << op->name;
    EXPECT_FALSE(op->vjp_formula.empty()) << op->name;
    EXPECT_EQ(&dg::find_op(op->name), op);
  }
}

TEST(Registry, UserOpPassesGradientChecks) {
  cube_op();
  Var x = dg::input(f64({-2, 0.5, 3}, {3}));
  EXPECT_TRUE(ValuesNear(cube(x), {3}, {-8, 0.125, 27}));

  dg::Tape tape;
  Var v = dg::variable(f64({-2, 0.5, 3}, {3}));
  auto g = dg::grad(dg::sum(cube(v)), {v});
  EXPECT_TRUE(ValuesNear(g[0], {3}, {12, 0.75, 27}));

  dg::test::Fn f = [](const dg::test::Vars& in) { return dg::test::Vars{cube(in[0])}; };
  for (const dg::Shape& shape : {dg::Shape{}, dg::Shape{4}, dg::Shape{2, 3}}) {
    Tensor t = dg::test::rand64(shape, 11);
    EXPECT_TRUE(Passed(dg::gradcheck(f, {t})));
    EXPECT_TRUE(Passed(dg::gradgradcheck(f, {t})));
    EXPECT_TRUE(Passed(dg::check_float32(f, {t})));
  }
  // Composed with built-in ops.
  dg::test::Fn g2 = [](const dg::test::Vars& in) {
    return dg::test::Vars{dg::sum(dg::tanh(cube(dg::mul(in[0], in[1]))), {.axes = {1}})};
  };
  EXPECT_TRUE(Passed(dg::gradcheck(g2, {dg::test::rand64({2, 3}, 12), dg::test::rand64({3}, 13)})));
  EXPECT_TRUE(
      Passed(dg::gradgradcheck(g2, {dg::test::rand64({2, 3}, 12), dg::test::rand64({3}, 13)})));
}

TEST(Registry, GradcheckCatchesAWrongVjp) {
  // The checks must be able to fail: an op whose VJP forgets the factor 3.
  static const dg::OpDef& wrong = dg::register_op([] {
    dg::OpDef def = cube_def();
    def.name = "test_wrong_cube";
    def.vjp = [](const dg::VjpContext& c) -> std::vector<Var> {
      const Var& x = c.input(0);
      return {dg::mul(c.grad_output(0), dg::mul(x, x))};
    };
    return def;
  }());
  dg::test::Fn f = [](const dg::test::Vars& in) { return dg::call(wrong.name, {in[0]}); };
  dg::CheckResult r = dg::gradcheck(f, {dg::test::rand64({3}, 1)});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.report.find("gradcheck failed"), std::string::npos) << r.report;
  EXPECT_GT(r.worst_error, 1);
}

TEST(Registry, GradgradcheckCatchesANonDifferentiableVjp) {
  // First order right, but the VJP multiplies by a constant 3x^2 computed from raw values, so
  // its own derivative in x is lost: only the second-order check can see it.
  static const dg::OpDef& frozen = dg::register_op([] {
    dg::OpDef def = cube_def();
    def.name = "test_frozen_cube";
    def.vjp = [](const dg::VjpContext& c) -> std::vector<Var> {
      Tensor x = c.input(0).value().to(DType::f64);
      Tensor d(x.shape(), DType::f64);
      for (int64_t i = 0; i < x.numel(); ++i) d.data<double>()[i] = 3 * x.at(i) * x.at(i);
      return {dg::mul(c.grad_output(0), dg::constant(d.to(c.input(0).dtype())))};
    };
    return def;
  }());
  dg::test::Fn f = [](const dg::test::Vars& in) { return dg::call(frozen.name, {in[0]}); };
  Tensor x = dg::test::away_from_zero({3}, 5);
  EXPECT_TRUE(Passed(dg::gradcheck(f, {x})));
  dg::CheckResult r = dg::gradgradcheck(f, {x});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.report.find("gradgradcheck"), std::string::npos) << r.report;
}

TEST(Registry, CheckFloat32CatchesAFloat32OnlyBug) {
  static const dg::OpDef& sloppy = dg::register_op([] {
    dg::OpDef def = cube_def();
    def.name = "test_sloppy_float32_cube";
    def.forward = [](const dg::OpCall& c, std::span<const dg::TensorSpec> specs) {
      Tensor y(specs[0].shape, specs[0].dtype);
      if (y.dtype() == DType::f64) {
        cube_kernel<double>(c.input(0), y);
      } else {
        cube_kernel<float>(c.input(0), y);
        for (float& v : y.values<float>()) v += 0.01f;  // the bug
      }
      return std::vector<Tensor>{y};
    };
    return def;
  }());
  dg::test::Fn f = [](const dg::test::Vars& in) { return dg::call(sloppy.name, {in[0]}); };
  Tensor x = dg::test::rand64({4}, 6);
  EXPECT_TRUE(Passed(dg::gradcheck(f, {x})));
  dg::CheckResult r = dg::check_float32(f, {x});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.report.find("float32"), std::string::npos) << r.report;
}

TEST(Registry, DuplicateNamesAreRejected) {
  cube_op();
  EXPECT_TRUE(ThrowsError([] { (void)dg::register_op(cube_def()); },
                          {"register_op", "'cube'", "already registered"}));
  dg::OpDef relu_again = cube_def();
  relu_again.name = "relu";
  EXPECT_TRUE(
      ThrowsError([&] { (void)dg::register_op(relu_again); }, {"'relu'", "already registered"}));
  // The original is untouched.
  Var x = dg::input(f64({-1, 2}, {2}));
  EXPECT_TRUE(ValuesNear(dg::relu(x), {2}, {0, 2}));
}

TEST(Registry, IncompleteDefinitionsAreRejected) {
  dg::OpDef no_name = cube_def();
  no_name.name = "";
  EXPECT_TRUE(ThrowsError([&] { (void)dg::register_op(no_name); }, {"register_op", "no name"}));
  dg::OpDef no_shape = cube_def();
  no_shape.name = "test_no_shape";
  no_shape.shape = nullptr;
  EXPECT_TRUE(
      ThrowsError([&] { (void)dg::register_op(no_shape); }, {"'test_no_shape'", "shape rule"}));
  dg::OpDef no_forward = cube_def();
  no_forward.name = "test_no_forward";
  no_forward.forward = nullptr;
  EXPECT_TRUE(
      ThrowsError([&] { (void)dg::register_op(no_forward); }, {"'test_no_forward'", "forward"}));
  dg::OpDef optional_first = cube_def();
  optional_first.name = "test_optional_first";
  optional_first.inputs = {{"b", dg::InputKind::floating, true}, {"x"}};
  EXPECT_TRUE(ThrowsError([&] { (void)dg::register_op(optional_first); },
                          {"required input 'x'", "optional"}));
  dg::OpDef bad_default = cube_def();
  bad_default.name = "test_bad_default";
  bad_default.attrs = {{"k", dg::AttrType::integer, dg::AttrValue("three")}};
  EXPECT_TRUE(ThrowsError([&] { (void)dg::register_op(bad_default); },
                          {"'test_bad_default'", "'k'", "a string"}));
  // None of them was registered.
  EXPECT_THROW((void)dg::find_op("test_no_shape"), dg::Error);
  EXPECT_THROW((void)dg::find_op("test_bad_default"), dg::Error);
}

TEST(Registry, OpWithoutVjpIsNotRecorded) {
  const dg::OpDef& op = floor_op();
  dg::Tape tape;
  Var x = dg::variable(f64({1.5, -0.5}, {2}));
  Var y = dg::call(op.name, {x})[0];
  EXPECT_TRUE(ValuesNear(y, {2}, {1, -1}));
  EXPECT_EQ(y.producer(), nullptr);
  EXPECT_FALSE(y.requires_grad());
}

TEST(Registry, MakeAttrsFillsDefaultsAndCoerces) {
  const dg::OpDef& elu = dg::find_op("elu");
  dg::Attrs a = dg::make_attrs(elu, {});
  EXPECT_EQ(a.real("alpha"), 1.0);
  dg::Attrs b = dg::make_attrs(elu, {{"alpha", 2}});  // an integer literal for a float
  EXPECT_EQ(b.real("alpha"), 2.0);
  dg::Attrs c = b.with({{"alpha", 0.25}});
  EXPECT_EQ(c.real("alpha"), 0.25);
  EXPECT_EQ(b.real("alpha"), 2.0);
  EXPECT_TRUE(ThrowsError([&] { (void)b.with({{"beta", 1.0}}); }, {"elu", "'beta'"}));
  EXPECT_TRUE(ThrowsError([&] { (void)a.get("beta"); }, {"elu", "no attribute 'beta'"}));

  const dg::OpDef& matmul = dg::find_op("matmul");
  dg::Attrs m = dg::make_attrs(matmul, {{"transpose_b", true}});
  EXPECT_FALSE(m.boolean("transpose_a"));
  EXPECT_TRUE(m.boolean("transpose_b"));
  EXPECT_EQ(dg::default_label(matmul, m), "matmul bT");
  EXPECT_EQ(dg::op_label(elu, c), "elu alpha=0.25");
  EXPECT_EQ(dg::default_label(elu, a), "elu");
  EXPECT_EQ(dg::pair_label(dg::Ints{2, 2}), "2");
  EXPECT_EQ(dg::pair_label(dg::Ints{2, 1}), "2x1");
  EXPECT_EQ(dg::AttrValue(dg::Ints{1, 2}).to_string(), "[1,2]");
  EXPECT_EQ(dg::AttrValue("mean").to_string(), "\"mean\"");
  EXPECT_EQ(dg::AttrValue(true).to_string(), "true");
}

TEST(Registry, AttrsMadeForAnotherOpAreRejected) {
  const dg::OpDef& elu = dg::find_op("elu");
  const dg::OpDef& relu = dg::find_op("relu");
  Var x = dg::input(f64({1}, {1}));
  std::vector<Var> in{x};
  EXPECT_TRUE(ThrowsError([&] { (void)dg::call(relu, in, dg::make_attrs(elu, {})); },
                          {"relu", "another op"}));
}
