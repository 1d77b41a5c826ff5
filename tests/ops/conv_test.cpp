// conv2d, conv_transpose2d, conv2d_weight_grad, conv1x1 and bias_add.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>

#include "deltagraph/testing/properties.h"
#include "test_util.h"
#include "typed_calls.h"

namespace dg {
namespace {

using test::expect_gradients_ok;
using test::f64;
using test::ThrowsError;
using test::ValuesNear;

// The seeds' example: a 3x3 input and a 2x2 filter give a 2x2 output; the input gradient is
// the "full" convolution of the output gradient with the filter, the weight gradient the
// correlation of the input with the output gradient.
TEST(Conv2d, ThreeByThreeInputTwoByTwoFilterByHand) {
  Tape tape;
  Var x = variable(f64({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3}));
  Var w = variable(f64({1, 0, 0, -1}, {1, 1, 2, 2}));
  Var y = conv2d(x, w);
  EXPECT_TRUE(ValuesNear(y, y.shape(), {1 - 5, 2 - 6, 4 - 8, 5 - 9}));
  auto g = grad({y}, {x, w}, {Var(Tensor::ones({1, 1, 2, 2}, DType::f64))});
  EXPECT_TRUE(ValuesNear(g[0], g[0].shape(), {1, 1, 0, 1, 0, -1, 0, -1, -1}));
  EXPECT_TRUE(ValuesNear(g[1], g[1].shape(), {12, 16, 24, 28}));
}

TEST(Conv2d, StridePaddingDilationGroupsByHand) {
  // 1 image, 2 channels 3x3, groups 2, 1x1 kernels: each output channel scales its own input.
  Tensor x = Tensor::arange(18, DType::f64).reshape({1, 2, 3, 3});
  Tensor w = f64({2, -1}, {2, 1, 1, 1});
  Var y = conv2d(x, w, {.stride = 2, .groups = 2});
  EXPECT_EQ(y.shape(), (Shape{1, 2, 2, 2}));
  EXPECT_TRUE(ValuesNear(y, y.shape(), {0, 4, 12, 16, -9, -11, -15, -17}));
  // padding 1, dilation 2, 2x2 kernel of ones over a 3x3 of ones: each output counts the taps
  // that land inside the image.
  Var z = conv2d(Tensor::ones({1, 1, 3, 3}, DType::f64), Tensor::ones({1, 1, 2, 2}, DType::f64),
                 {.padding = 1, .dilation = 2});
  EXPECT_EQ(z.shape(), (Shape{1, 1, 3, 3}));
  EXPECT_TRUE(ValuesNear(z, z.shape(), {1, 2, 1, 2, 4, 2, 1, 2, 1}));
}

// float32 3x3 stride-1 convolutions with >= 16 channels in and out run Winograd by default:
// forward, input gradient and weight gradient stay within 1e-5 of float64 (relative to the
// largest magnitude; measured 1.8e-6), the direct algorithm within 2e-6 (measured 4e-7), and
// where the CPU runs Winograd the two really are different computations.
TEST(Conv2d, WinogradStaysCloseToFloat64AndCanBeTurnedOff) {
  const Tensor x = test::rand64({2, 16, 10, 9}, 31);
  const Tensor w = test::rand64({32, 16, 3, 3}, 32, -0.25, 0.25);
  const Tensor g = test::rand64({2, 32, 10, 9}, 33);
  auto run = [&](DType dtype) {
    Tape tape;
    Var xv = variable(x.to(dtype)), wv = variable(w.to(dtype));
    Var y = conv2d(xv, wv, {.padding = 1});
    auto grads = grad({y}, {xv, wv}, {Var(g.to(dtype))});
    return std::vector<Tensor>{y.value().to(DType::f64), grads[0].value().to(DType::f64),
                               grads[1].value().to(DType::f64)};
  };
  auto relative_error = [](const Tensor& a, const Tensor& ref) {
    double worst = 0, largest = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      worst = std::max(worst, std::abs(a.at(i) - ref.at(i)));
      largest = std::max(largest, std::abs(ref.at(i)));
    }
    return worst / largest;
  };
  const bool before = winograd_enabled();
  const std::vector<Tensor> reference = run(DType::f64);
  set_winograd(true);
  const std::vector<Tensor> winograd = run(DType::f32);
  set_winograd(false);
  const std::vector<Tensor> direct = run(DType::f32);
  set_winograd(before);
  const char* names[] = {"y", "dx", "dw"};
  bool differ = false;
  for (int i = 0; i < 3; ++i) {
    EXPECT_LT(relative_error(winograd[i], reference[i]), 1e-5) << names[i];
    EXPECT_LT(relative_error(direct[i], reference[i]), 2e-6) << names[i];
    differ |= !allclose(winograd[i], direct[i], 0, 0);
  }
  if (winograd_supported()) {
    EXPECT_TRUE(differ) << "Winograd is supported here, but the results equal the direct ones";
  }
}

TEST(ConvTranspose2d, ScattersEachInputThroughTheKernel) {
  // A single 1 at (0,0) of a 2x2 input with stride 2 reproduces the kernel in the corner.
  Tensor x = f64({1, 0, 0, 0}, {1, 1, 2, 2});
  Tensor w = f64({1, 2, 3, 4}, {1, 1, 2, 2});
  Var y = conv_transpose2d(x, w, {.stride = 2});
  EXPECT_EQ(y.shape(), (Shape{1, 1, 4, 4}));
  EXPECT_TRUE(ValuesNear(y, y.shape(), {1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  // output_padding adds a row and a column that only the bias reaches.
  Var z = conv_transpose2d(x, w, f64({0.5}, {1}), {.stride = 2, .output_padding = 1});
  EXPECT_EQ(z.shape(), (Shape{1, 1, 5, 5}));
  EXPECT_DOUBLE_EQ(z.value().at(24), 0.5);
  EXPECT_DOUBLE_EQ(z.value().at(0), 1.5);
}

// ---- properties over the configurations the ops' samplers draw ---------------------------
// gen::op_sample draws from the op's registered sampler (ops/conv.cpp) and keeps only samples
// the op's shape rule accepts. A failure names the configuration and RapidCheck shrinks it.

// The typed front's options from a sample's attributes.
Conv2dOptions conv2d_options(const Attrs& a) {
  return {.stride = a.pair("stride"),
          .padding = a.padding("padding"),
          .dilation = a.pair("dilation"),
          .groups = a.integer("groups")};
}
ConvTranspose2dOptions conv_transpose2d_options(const Attrs& a) {
  return {.stride = a.pair("stride"),
          .padding = a.padding("padding"),
          .output_padding = a.pair("output_padding"),
          .dilation = a.pair("dilation"),
          .groups = a.integer("groups")};
}

RC_GTEST_PROP(Conv2d, GradientsMatchFiniteDifferencesOverRandomConfigurations, ()) {
  const OpDef& op = find_op("conv2d");
  const OpSample s = *gen::op_sample(op);
  const Conv2dOptions o = conv2d_options(make_attrs(op, s.attrs));
  const CheckResult r = test::gradient_checks(
      [&](const std::vector<Var>& v) {
        return std::vector<Var>{v.size() == 3 ? conv2d(v[0], v[1], v[2], o)
                                              : conv2d(v[0], v[1], o)};
      },
      s.inputs);
  if (!r.ok) RC_FAIL(describe(op, s) + "\n" + r.report);
}

RC_GTEST_PROP(ConvTranspose2d, GradientsMatchFiniteDifferencesOverRandomConfigurations, ()) {
  const OpDef& op = find_op("conv_transpose2d");
  const OpSample s = *gen::op_sample(op);
  const ConvTranspose2dOptions o = conv_transpose2d_options(make_attrs(op, s.attrs));
  const CheckResult r = test::gradient_checks(
      [&](const std::vector<Var>& v) {
        return std::vector<Var>{v.size() == 3 ? conv_transpose2d(v[0], v[1], v[2], o)
                                              : conv_transpose2d(v[0], v[1], o)};
      },
      s.inputs);
  if (!r.ok) RC_FAIL(describe(op, s) + "\n" + r.report);
}

// That conv_transpose2d is the adjoint of conv2d over random configurations is
// Identities.ConvTransposeIsTheAdjointOfConv2d (properties_test.cpp).

TEST(Conv1x1, EqualsConv2dWithAOneByOneKernelAndLinearPerPixel) {
  Tensor x = Tensor::randn({2, 3, 4, 5}, 1, DType::f64),
         w = Tensor::randn({6, 3, 1, 1}, 2, DType::f64);
  Tensor b = Tensor::randn({6}, 3, DType::f64);
  Var a = conv1x1(x, w, b), c = conv2d(x, w, b);
  EXPECT_TRUE(allclose(a.value(), c.value(), 1e-12, 1e-12));
  // Per pixel: [N*H*W, C] @ w^T + b, laid back out as NCHW.
  Var pixels = reshape(permute(x, {0, 2, 3, 1}), {-1, 3});
  Var lin = permute(reshape(linear(pixels, reshape(w, {6, 3}), b), {2, 4, 5, 6}), {0, 3, 1, 2});
  EXPECT_TRUE(allclose(a.value(), lin.value(), 1e-12, 1e-12));
  expect_gradients_ok(
      [](const std::vector<Var>& v) { return std::vector<Var>{conv1x1(v[0], v[1], v[2])}; },
      {x, w, b});
}

TEST(Conv2dWeightGrad, GradientsMatchFiniteDifferences) {
  Tensor x = Tensor::randn({2, 4, 5, 6}, 1, DType::f64);
  Conv2dOptions o{.stride = {2, 1}, .padding = {1, 0}, .dilation = {1, 2}, .groups = 2};
  Tensor g =
      Tensor::randn(conv2d(x, Tensor::zeros({6, 2, 3, 2}, DType::f64), o).shape(), 2, DType::f64);
  expect_gradients_ok(
      [&](const std::vector<Var>& v) {
        return std::vector<Var>{conv2d_weight_grad(v[0], v[1], {3, 2}, o)};
      },
      {x, g});
}

TEST(BiasAdd, AddsPerChannelAndItsGradientIsTheChannelSum) {
  Tensor x = Tensor::randn({2, 3, 4, 5}, 1, DType::f64), b = f64({1, 2, 3}, {3});
  Var y = bias_add(x, b);
  EXPECT_DOUBLE_EQ(y.value().at(0), x.at(0) + 1);
  EXPECT_DOUBLE_EQ(y.value().at(20), x.at(20) + 2);
  Tape tape;
  Var bv = variable(b);
  Tensor g = Tensor::randn({2, 3, 4, 5}, 2, DType::f64);
  auto db = grad({bias_add(x, bv)}, {bv}, {Var(g)});
  double channel1 = 0;
  for (int n = 0; n < 2; ++n)
    for (int i = 0; i < 20; ++i) channel1 += g.at(n * 60 + 20 + i);
  EXPECT_NEAR(db[0].value().at(1), channel1, 1e-12);
  expect_gradients_ok(
      [](const std::vector<Var>& v) { return std::vector<Var>{bias_add(v[0], v[1])}; }, {x, b});
  expect_gradients_ok(
      [](const std::vector<Var>& v) { return std::vector<Var>{bias_add(v[0], v[1])}; },
      {Tensor::randn({4, 3}, 3, DType::f64), b});
}

// ---- asymmetric padding and "same" ---------------------------------------------------------

// padding [top, bottom, left, right] is conv2d of the zero-padded input (pad2d takes F.pad's
// [left, right, top, bottom]) with no padding: forward, gradients and second derivatives, in
// float64 (the GEMM path) and float32 (oneDNN's, with its own left/right padding).
TEST(Conv2d, FourSidedPaddingIsConv2dOfTheZeroPaddedInput) {
  const Tensor x = test::rand64({2, 4, 7, 6}, 41), w = test::rand64({6, 2, 3, 2}, 42);
  const Tensor b = test::rand64({6}, 43);
  for (const Conv2dOptions& o :
       {Conv2dOptions{.padding = {0, 2, 1, 0}, .groups = 2},
        Conv2dOptions{
            .stride = {2, 3}, .padding = {2, 1, 0, 1}, .dilation = {1, 2}, .groups = 2}}) {
    Conv2dOptions unpadded = o;
    unpadded.padding = 0;
    const Padding& p = o.padding;
    for (DType dtype : {DType::f64, DType::f32}) {
      const Tensor xd = x.to(dtype), wd = w.to(dtype), bd = b.to(dtype);
      const Var direct = conv2d(xd, wd, bd, o);
      const Var padded =
          conv2d(pad2d(xd, {.pads = {p.left, p.right, p.top, p.bottom}}), wd, bd, unpadded);
      ASSERT_EQ(direct.shape(), padded.shape());
      EXPECT_TRUE(allclose(direct.value(), padded.value(), 1e-5, 1e-5)) << dtype_name(dtype);
    }
    expect_gradients_ok(
        [&](const std::vector<Var>& v) { return std::vector<Var>{conv2d(v[0], v[1], v[2], o)}; },
        {x, w, b}, true);
  }
  // Padding on one side only: the windows at that side see fewer ones.
  const Tensor ones = Tensor::ones({1, 1, 5, 5}, DType::f64);
  const Tensor k = Tensor::ones({1, 1, 3, 3}, DType::f64);
  EXPECT_EQ(conv2d(ones, k, {.stride = 2, .padding = {0, 1, 0, 1}}).shape(), (Shape{1, 1, 2, 2}));
  EXPECT_TRUE(ValuesNear(conv2d(ones, k, {.stride = 2, .padding = {0, 1, 0, 1}}), {1, 1, 2, 2},
                         {9, 9, 9, 9}));
  EXPECT_TRUE(ValuesNear(conv2d(ones, k, {.padding = {1, 0, 0, 0}}), {1, 1, 4, 3},
                         {6, 6, 6, 9, 9, 9, 9, 9, 9, 9, 9, 9}));
}

// "same" keeps H x W at stride 1 for odd and even kernels, with and without dilation; the odd
// extra row/column goes to the bottom/right (TensorFlow, ONNX SAME_UPPER, PyTorch 'same').
TEST(Conv2d, SamePaddingKeepsTheSizeWithTheExtraRowAtTheBottom) {
  const Tensor x = test::rand64({1, 2, 6, 5}, 44);
  for (Pair kernel : {Pair{3, 3}, Pair{2, 4}, Pair{1, 5}})
    for (Pair dilation : {Pair{1, 1}, Pair{2, 1}}) {
      const Tensor w = test::rand64({3, 2, kernel.h, kernel.w}, 45);
      const Var same = conv2d(x, w, {.padding = "same", .dilation = dilation});
      EXPECT_EQ(same.shape(), (Shape{1, 3, 6, 5}));
      const int64_t rows = dilation.h * (kernel.h - 1), columns = dilation.w * (kernel.w - 1);
      const Var explicit_ =
          conv2d(x, w,
                 {.padding = {rows / 2, rows - rows / 2, columns / 2, columns - columns / 2},
                  .dilation = dilation});
      EXPECT_TRUE(allclose(same.value(), explicit_.value(), 0, 0));
      EXPECT_EQ(Padding("same").resolved(kernel, dilation),
                Padding(rows / 2, rows - rows / 2, columns / 2, columns - columns / 2));
    }
  // A 2x2 kernel of ones: the extra row and column are at the bottom/right, so the last output
  // row and column see fewer ones.
  EXPECT_TRUE(ValuesNear(conv2d(Tensor::ones({1, 1, 2, 2}, DType::f64),
                                Tensor::ones({1, 1, 2, 2}, DType::f64), {.padding = "same"}),
                         {1, 1, 2, 2}, {4, 2, 2, 1}));
  // "valid" is no padding.
  EXPECT_EQ(conv2d(x, test::rand64({3, 2, 3, 3}, 46), {.padding = "valid"}).shape(),
            (Shape{1, 3, 4, 3}));
  expect_gradients_ok(
      [](const std::vector<Var>& v) {
        return std::vector<Var>{conv2d(v[0], v[1], {.padding = "same", .dilation = {1, 2}})};
      },
      {x, test::rand64({3, 2, 2, 3}, 47)}, true);
}

// conv_transpose2d crops [top, bottom, left, right]: it stays the adjoint of conv2d with that
// padding, and narrowing its symmetric-zero output by the four crops gives it.
TEST(ConvTranspose2d, FourSidedPaddingCropsTheFullOutput) {
  const Tensor x = test::rand64({1, 2, 3, 4}, 48), w = test::rand64({2, 3, 3, 2}, 49);
  const Var full = conv_transpose2d(x, w, {.stride = 2});
  const Var cropped = conv_transpose2d(x, w, {.stride = 2, .padding = {1, 0, 0, 2}});
  const int64_t H = full.shape()[2], W = full.shape()[3];
  EXPECT_TRUE(
      allclose(cropped.value(), narrow(narrow(full, 2, 1, H - 1), 3, 0, W - 2).value(), 0, 0));
  expect_gradients_ok(
      [](const std::vector<Var>& v) {
        return std::vector<Var>{
            conv_transpose2d(v[0], v[1], {.stride = 2, .padding = {1, 0, 0, 2}})};
      },
      {x, w}, true);
}

TEST(ConvErrors, PaddingValuesAndModesAreChecked) {
  const Tensor x = Tensor::zeros({1, 2, 6, 6}), w = Tensor::zeros({3, 2, 3, 3});
  EXPECT_TRUE(ThrowsError([&] { conv2d(x, w, {.stride = 2, .padding = "same"}); },
                          {"conv2d at ", ": padding \"same\" needs stride 1, got stride [2,2]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv_transpose2d(x, Tensor::zeros({2, 3, 3, 3}), {.padding = "same"});
      },
      {"conv_transpose2d at ", ": padding \"same\" is for conv2d"}));
  EXPECT_TRUE(
      ThrowsError([&] { conv2d(x, w, {.padding = "full"}); },
                  {"conv2d: the typed call gives attribute 'padding' a string, not a padding"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv2d(x, w, {.padding = {1, -1, 0, 0}});
      },
      {"conv2d at ", ": padding must not be negative, got [1,-1,0,0]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        call("conv2d", {x, w}, {{"padding", Ints{1, 2, 3}}});
      },
      {"conv2d: attribute 'padding' must be a padding (p, [h, w], [top, bottom, left, right], "
       "\"same\" or \"valid\"), got a list ([1,2,3])"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv2d(Tensor::zeros({1, 2, 2, 2}), w, {.padding = {0, 0, 1, 0}});
      },
      {"conv2d at ",
       ": kernel [3,3] with stride [1,1], padding [0,0,1,0], dilation [1,1] does not fit in "
       "input 2x2 (output would be 0x1)"}));
}

TEST(ConvErrors, NameTheOpTheArgumentTheShapesAndTheRule) {
  Tensor x = Tensor::zeros({1, 3, 8, 8}), w = Tensor::zeros({16, 4, 3, 3});
  EXPECT_TRUE(ThrowsError(
      [&] { conv2d(x, w); },
      {"conv2d at ",
       ": x has 3 channels but w [16,4,3,3] with groups=1 expects 4 (w.shape[1]*groups)"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv2d(Tensor::zeros({1, 4, 2, 2}), w);
      },
      {"conv2d at ",
       ": kernel [3,3] with stride [1,1], padding [0,0], dilation [1,1] does not fit in "
       "input 2x2 (output would be 0x0)"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv2d(Tensor::zeros({1, 4, 8}), w);
      },
      {"conv2d at ", ": x must be 4-D [N,C,H,W], got [1,4,8]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv2d(Tensor::zeros({1, 6, 8, 8}), Tensor::zeros({5, 2, 3, 3}), {.groups = 3});
      },
      {"which groups=3 does not divide"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv2d(Tensor::zeros({1, 4, 8, 8}), w, Tensor::zeros({8}));
      },
      {"conv2d at ", ": b is [8] but the output has 16 channels; b must be [16]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv2d(Tensor::zeros({1, 4, 8, 8}), w, {.stride = 0});
      },
      {"stride must be at least 1"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv2d(Tensor::zeros({1, 4, 8, 8}), Tensor::zeros({16, 4, 3, 3}, DType::f64));
      },
      {"conv2d at ", ": input 'w' is float64 but 'x' is float32"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv_transpose2d(Tensor::zeros({1, 3, 4, 4}), Tensor::zeros({4, 2, 3, 3}));
      },
      {"conv_transpose2d at ", ": x has 3 channels but w [4,2,3,3] expects 4 (w.shape[0]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv_transpose2d(Tensor::zeros({1, 4, 4, 4}), Tensor::zeros({4, 2, 3, 3}),
                         {.stride = 2, .output_padding = 2});
      },
      {"conv_transpose2d at ",
       ": output_padding [2,2] must be smaller than max(stride, dilation) per axis "
       "([2,2])"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        conv1x1(Tensor::zeros({1, 4, 4, 4}), Tensor::zeros({2, 4, 3, 3}));
      },
      {"conv1x1 at ", ": w must be [O,C,1,1], got [2,4,3,3]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        bias_add(Tensor::zeros({2, 3, 4, 4}), Tensor::zeros({4}));
      },
      {"bias_add at ", ": b is [4] but x [2,3,4,4] has 3 channels (axis 1); b must be [3]"}));
}

}  // namespace
}  // namespace dg

// ---- how each op of this family is called through its typed function ---------------------
// (tests/typed_ops_test.cpp compares each with the call by name; an op missing here fails there)

namespace typed_calls_conv {
using namespace dg;
using Vars = std::vector<dg::Var>;
const bool listed = dg::test::list_typed_calls({
    {"conv2d",
     [](const Vars& in, const Attrs& a) {
       return test::with_optional_bias(in, [&](const Var& x, const Var& w, const Var* b) {
         return b ? conv2d(x, w, *b, conv2d_options(a)) : conv2d(x, w, conv2d_options(a));
       });
     }},
    {"conv_transpose2d",
     [](const Vars& in, const Attrs& a) {
       return test::with_optional_bias(in, [&](const Var& x, const Var& w, const Var* b) {
         return b ? conv_transpose2d(x, w, *b, conv_transpose2d_options(a))
                  : conv_transpose2d(x, w, conv_transpose2d_options(a));
       });
     }},
    {"conv2d_weight_grad",
     [](const Vars& in, const Attrs& a) {
       return Vars{conv2d_weight_grad(in[0], in[1], a.pair("kernel_size"), conv2d_options(a))};
     }},
    {"conv1x1",
     [](const Vars& in, const Attrs&) {
       return test::with_optional_bias(in, [](const Var& x, const Var& w, const Var* b) {
         return b ? conv1x1(x, w, *b) : conv1x1(x, w);
       });
     }},
    {"bias_add", [](const Vars& in, const Attrs&) { return Vars{bias_add(in[0], in[1])}; }},
});
}  // namespace typed_calls_conv
