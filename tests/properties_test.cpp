// Property-based tests: every built-in op against finite differences (first and second order),
// float32 against float64 and batch consistency, over random shapes and attributes drawn by
// its sampler; the algebraic identities of the convolutional ops; and a deliberately wrong VJP
// being caught, shrunk and written out as a reference case.
//
// Trials per property: DG_PROPERTY_TRIALS (default 10).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <filesystem>

#include "commands.h"
#include "deltagraph/diagnostics/cases.h"
#include "deltagraph/testing/properties.h"
#include "test_util.h"

namespace dg {
namespace {

std::vector<std::string> builtin_op_names() {
  std::vector<std::string> names;
  for (const OpDef* op : ops())
    if (op->builtin) names.push_back(op->name);
  return names;
}

// An op cannot land untested: every built-in op has a sampler, hence property coverage.
TEST(Properties, EveryBuiltinOpHasPropertyCoverage) {
  const auto names = builtin_op_names();
  EXPECT_GE(names.size(), 40u);
  for (const std::string& name : names)
    EXPECT_TRUE(static_cast<bool>(find_op(name).sample)) << name << " has no sampler";
}

class OpProperties : public ::testing::TestWithParam<std::string> {};

// The suite runs with a fixed seed (reproducible CI) unless DG_PROPERTY_SEED says otherwise;
// `dg gradcheck` explores with fresh seeds.
PropertyOptions suite_options() {
  PropertyOptions o;
  if (o.seed == 0) o.seed = 20261121;
  return o;
}

// A property checked on no sample passes without having checked anything (a sampler whose
// draws the shape rule always rejects, say). Every op must have at least one property that
// really ran on this many samples.
constexpr int kMinSamplesPerOp = 5;

TEST_P(OpProperties, HoldOverRandomShapesAndAttributes) {
  int most_samples = 0;
  std::string counts;
  for (const PropertyResult& r : check_op_properties(find_op(GetParam()), suite_options())) {
    EXPECT_TRUE(r.ok) << r.report;
    most_samples = std::max(most_samples, r.samples);
    counts += fmt::format(" {}: {}", r.property, r.samples);
  }
  EXPECT_GE(most_samples, kMinSamplesPerOp)
      << GetParam() << ": no property ran on at least " << kMinSamplesPerOp
      << " samples (samples checked per property:" << counts
      << "); its sampler draws configurations the op rejects, or too few that apply";
}

INSTANTIATE_TEST_SUITE_P(EveryBuiltinOp, OpProperties, ::testing::ValuesIn(builtin_op_names()),
                         [](const auto& info) { return info.param; });

// ---- algebraic identities ---------------------------------------------------------------

double dot(const Var& a, const Var& b) { return sum(mul(a, b)).item(); }

// <conv2d(x, w), y> = <x, conv_transpose2d(y, w)>, with the output_padding that gives back x's
// size: over random strides, paddings (asymmetric and "same" too), dilations and groups.
RC_GTEST_PROP(Identities, ConvTransposeIsTheAdjointOfConv2d, ()) {
  OpSample s = *gen::op_sample(find_op("conv2d"));
  const Attrs a = make_attrs(find_op("conv2d"), s.attrs);
  Var x = s.inputs[0], w = s.inputs[1];
  Var y = call(find_op("conv2d"), std::vector<Var>{x, w}, a)[0];
  Tensor g = *gen::smooth(y.shape());
  const Ints st = a.ints("stride"), d = a.ints("dilation");
  // "same" resolved: the transposed convolution takes the four numbers.
  const Padding p = a.padding("padding").resolved({w.shape()[2], w.shape()[3]}, {d[0], d[1]});
  auto op = [&](int axis) {
    const int64_t in = x.shape()[2 + axis], out = y.shape()[2 + axis], k = w.shape()[2 + axis];
    const int64_t pads = axis == 0 ? p.rows() : p.columns();
    return in - ((out - 1) * st[axis] - pads + d[axis] * (k - 1) + 1);
  };
  Var back = conv_transpose2d(g, w,
                              {.stride = {st[0], st[1]},
                               .padding = p,
                               .output_padding = {op(0), op(1)},
                               .dilation = {d[0], d[1]},
                               .groups = a.integer("groups")});
  RC_ASSERT(back.shape() == x.shape());
  const double lhs = dot(y, g), rhs = dot(x, back);
  RC_ASSERT(std::abs(lhs - rhs) <= 1e-10 * (1 + std::abs(lhs)));
}

// The same from the transposed side, including output_padding >= stride (dilation > stride).
RC_GTEST_PROP(Identities, Conv2dIsTheAdjointOfConvTranspose, ()) {
  OpSample s = *gen::op_sample(find_op("conv_transpose2d"));
  const Attrs a = make_attrs(find_op("conv_transpose2d"), s.attrs);
  Var x = s.inputs[0], w = s.inputs[1];
  Var y = call(find_op("conv_transpose2d"), std::vector<Var>{x, w}, a)[0];
  Tensor g = *gen::smooth(y.shape());
  const Ints st = a.ints("stride"), d = a.ints("dilation");
  Var back = conv2d(g, w,
                    {.stride = {st[0], st[1]},
                     .padding = a.padding("padding"),
                     .dilation = {d[0], d[1]},
                     .groups = a.integer("groups")});
  back = narrow(narrow(back, 2, 0, x.shape()[2]), 3, 0, x.shape()[3]);
  const double lhs = dot(y, g), rhs = dot(x, back);
  RC_ASSERT(std::abs(lhs - rhs) <= 1e-10 * (1 + std::abs(lhs)));
}

// conv2d is linear in x and in w.
RC_GTEST_PROP(Identities, Conv2dIsLinearInEachArgument, ()) {
  OpSample s = *gen::op_sample(find_op("conv2d"));
  const Attrs a = make_attrs(find_op("conv2d"), s.attrs);
  auto conv = [&](const Var& x, const Var& w) {
    return call(find_op("conv2d"), std::vector<Var>{x, w}, a)[0];
  };
  Var x = s.inputs[0], w = s.inputs[1];
  Var x2 = *gen::smooth(x.shape()), w2 = *gen::smooth(w.shape());
  RC_ASSERT(allclose(conv(2.0 * x - x2, w).value(), (2.0 * conv(x, w) - conv(x2, w)).value(), 1e-10,
                     1e-10));
  RC_ASSERT(allclose(conv(x, w + 3.0 * w2).value(), (conv(x, w) + 3.0 * conv(x, w2)).value(), 1e-10,
                     1e-10));
}

// max_pool2d's VJP routes each cotangent to its window's maximum: it equals max_unpool2d of the
// cotangent when windows do not overlap, and the scatter-add (contributions summed) when they do.
RC_GTEST_PROP(Identities, MaxPoolVjpIsUnpoolWithoutOverlapAndScatterAddWithIt, ()) {
  OpSample s = *gen::op_sample(find_op("max_pool2d"));
  const Attrs a = make_attrs(find_op("max_pool2d"), s.attrs);
  Tape tape;
  Var x = variable(s.inputs[0]);
  auto out = call(find_op("max_pool2d"), std::vector<Var>{x}, a);
  Tensor g = *gen::smooth(out[0].shape());
  Tensor dx = grad({out[0]}, {x}, {Var(g)})[0].value();
  const Shape& xs = x.shape();
  RC_ASSERT(allclose(dx, scatter_add_at(g, out[1], {xs[2], xs[3]}).value(), 0, 1e-15));
  const Ints k = a.ints("kernel_size"), st = a.ints("stride"), d = a.ints("dilation");
  const Padding p = a.padding("padding");
  const bool tiling = st[0] == k[0] && st[1] == k[1] && d[0] == 1 && d[1] == 1 && p == Padding(0) &&
                      !a.boolean("ceil_mode");
  if (tiling) {
    // Windows that tile the input select distinct positions, so assignment and addition agree.
    Var unpooled = max_unpool2d(g, out[1],
                                {.kernel_size = {k[0], k[1]},
                                 .stride = {st[0], st[1]},
                                 .padding = p,
                                 .output_size = {xs[2], xs[3]}});
    RC_ASSERT(allclose(dx, unpooled.value(), 0, 0));
  }
}

// Unpooling then pooling again (same non-overlapping windows) gives back the values at the same
// indices.
RC_GTEST_PROP(Identities, UnpoolThenPoolReturnsTheValuesAtTheSameIndices, ()) {
  const int64_t k = *rc::gen::inRange<int64_t>(1, 4);
  const Shape xs{*rc::gen::inRange<int64_t>(1, 3), *rc::gen::inRange<int64_t>(1, 3),
                 k * *rc::gen::inRange<int64_t>(1, 4), k * *rc::gen::inRange<int64_t>(1, 4)};
  Tensor x = *gen::distinct(xs);
  auto [y, idx] = max_pool2d(x, {.kernel_size = k});
  Var shifted = add_scalar(y, 10.0);  // positive, so the zeros around them never win
  Var up = max_unpool2d(shifted, idx, {.kernel_size = k, .output_size = {xs[2], xs[3]}});
  auto [y2, idx2] = max_pool2d(up, {.kernel_size = k});
  RC_ASSERT(allclose(y2.value(), shifted.value(), 0, 0));
  RC_ASSERT(allclose(idx2.value(), idx.value(), 0, 0));
}

// conv1x1(x, w) = conv2d(x, w) with a 1x1 kernel = linear applied to every pixel.
RC_GTEST_PROP(Identities, Conv1x1IsConv2dAndLinearPerPixel, ()) {
  OpSample s = *gen::op_sample(find_op("conv1x1"));
  Var x = s.inputs[0], w = s.inputs[1];
  const int64_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3],
                O = w.shape()[0];
  Var a = conv1x1(x, w), b = conv2d(x, w);
  Var per_pixel = permute(
      reshape(linear(reshape(permute(x, {0, 2, 3, 1}), {-1, C}), reshape(w, {O, C})), {N, H, W, O}),
      {0, 3, 1, 2});
  RC_ASSERT(allclose(a.value(), b.value(), 1e-12, 1e-12));
  RC_ASSERT(allclose(a.value(), per_pixel.value(), 1e-12, 1e-12));
}

// bias_add's bias gradient is the per-channel sum of the cotangent.
RC_GTEST_PROP(Identities, BiasGradientIsThePerChannelSum, ()) {
  OpSample s = *gen::op_sample(find_op("bias_add"));
  Tape tape;
  Var b = variable(s.inputs[1]);
  Var y = bias_add(s.inputs[0], b);
  Tensor g = *gen::smooth(y.shape());
  Tensor db = grad({y}, {b}, {Var(g)})[0].value();
  const int64_t N = y.shape()[0], C = y.shape()[1], inner = y.numel() / (N * C);
  for (int64_t c = 0; c < C; ++c) {
    double total = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < inner; ++i) total += g.at((n * C + c) * inner + i);
    RC_ASSERT(std::abs(db.at(c) - total) <= 1e-12 * (1 + std::abs(total)));
  }
}

// softmax_xent is invariant to adding a constant to a sample's logits, and with class labels its
// gradient sums to 0 over the classes of every (non-ignored) element.
RC_GTEST_PROP(Identities, SoftmaxXentShiftInvarianceAndZeroSumGradient, ()) {
  OpSample s = *gen::op_sample(find_op("softmax_xent"));
  const Attrs a = make_attrs(find_op("softmax_xent"), s.attrs);
  auto xent = [&](const Var& z) {
    return call(find_op("softmax_xent"), std::vector<Var>{z, s.inputs[1]}, a)[0];
  };
  const double shift = *rc::gen::inRange<int>(-50, 50);
  RC_ASSERT(allclose(xent(add_scalar(s.inputs[0], shift)).value(), xent(s.inputs[0]).value(), 1e-9,
                     1e-9));
  if (s.inputs[1].dtype() != DType::i64) return;
  Tape tape;
  Var z = variable(s.inputs[0]);
  Var loss = xent(z);
  Tensor cot = loss.dim() == 0 ? Tensor::ones({}, DType::f64) : *gen::smooth(loss.shape());
  Var dz = grad({loss}, {z}, {Var(cot)})[0];
  for (double v : sum(dz, {.axes = {1}}).value().to_vector()) RC_ASSERT(std::abs(v) <= 1e-12);
}

// ---- a wrong VJP is caught, shrunk and written out --------------------------------------

TEST(Properties, AWrongVjpIsCaughtShrunkAndWrittenAsAFailingCase) {
  // y = x^2 with the VJP 3 x g: wrong everywhere except x = 0.
  static const OpDef& wrong = register_op({
      .name = "test_square_with_wrong_vjp",
      .summary = "y = x^2, with a deliberately wrong VJP",
      .inputs = {{"x"}},
      .shape = [](const OpCall& c) { return same_as_input(c); },
      .forward =
          [](const OpCall& c, std::span<const TensorSpec>) {
            Tensor y = c.input(0).to(DType::f64).clone();
            for (double& v : y.values<double>()) v = v * v;
            return std::vector<Tensor>{y.to(c.input(0).dtype())};
          },
      .vjp = [](const VjpContext& c) -> std::vector<Var> {
        return {c.grad_output(0) * (3.0 * c.input(0))};
      },
      .vjp_formula = "dx = 3 x g (wrong: should be 2 x g)",
      .sample =
          [](Sampler& s) {
            return OpSample{{s.smooth(sample_shape(s, 0, 3, 5))}, {}};
          },
  });
  const std::string dir =
      (std::filesystem::temp_directory_path() / "dg_property_case_test").string();
  std::filesystem::remove_all(dir);
  PropertyOptions options;
  options.trials = 20;
  options.seed = 12345;
  options.order = 1;
  options.case_dir = dir;
  auto results = check_op_properties(wrong, options);
  ASSERT_FALSE(results.empty());
  const PropertyResult& vjp = results[0];
  EXPECT_EQ(vjp.property, "vjp");
  ASSERT_FALSE(vjp.ok);
  // The report names the minimal configuration, the seed to replay it and the case file.
  EXPECT_NE(
      vjp.report.find("minimal failing configuration: test_square_with_wrong_vjp(x float64 []"),
      std::string::npos)
      << vjp.report;
  EXPECT_NE(vjp.report.find("seed 12345"), std::string::npos) << vjp.report;
  ASSERT_FALSE(vjp.case_file.empty());
  // Shrunk to the smallest input: a scalar.
  Case c = read_case(vjp.case_file);
  ASSERT_EQ(c.inputs.size(), 1u);
  EXPECT_EQ(c.inputs[0].value.numel(), 1);
  // The case reproduces the failure: the forward pass matches, the gradient does not.
  CaseResult r = run_case(c);
  EXPECT_FALSE(r.passed);
  EXPECT_TRUE(r.gradient_mismatch) << r.message;
  EXPECT_FALSE(r.forward_mismatch) << r.message;
  // And `dg cases FILE` (its code, in this process, where the test's op is registered) says so.
  ::testing::internal::CaptureStdout();
  const int status = cli::cases_command({vjp.case_file});
  const std::string printed = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(status, 1);
  EXPECT_NE(printed.find("0 passed, 1 failed"), std::string::npos) << printed;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace dg
