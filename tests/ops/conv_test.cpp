// conv2d, conv_transpose2d, conv2d_weight_grad, conv1x1 and bias_add.
#include <cmath>
#include <random>

#include "test_util.h"

namespace dg {
namespace {

using test::expect_error;
using test::expect_gradients_ok;
using test::expect_values;
using test::f64;

// The seeds' example: a 3x3 input and a 2x2 filter give a 2x2 output; the input gradient is
// the "full" convolution of the output gradient with the filter, the weight gradient the
// correlation of the input with the output gradient.
TEST(Conv2d, ThreeByThreeInputTwoByTwoFilterByHand) {
  Tape tape;
  Var x = variable(f64({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3}));
  Var w = variable(f64({1, 0, 0, -1}, {1, 1, 2, 2}));
  Var y = conv2d(x, w);
  expect_values(y.value(), {1 - 5, 2 - 6, 4 - 8, 5 - 9});
  auto g = grad({y}, {x, w}, {Var(Tensor::ones({1, 1, 2, 2}, DType::f64))});
  expect_values(g[0].value(), {1, 1, 0, 1, 0, -1, 0, -1, -1});
  expect_values(g[1].value(), {12, 16, 24, 28});
}

TEST(Conv2d, StridePaddingDilationGroupsByHand) {
  // 1 image, 2 channels 3x3, groups 2, 1x1 kernels: each output channel scales its own input.
  Tensor x = Tensor::arange(18, DType::f64).reshape({1, 2, 3, 3});
  Tensor w = f64({2, -1}, {2, 1, 1, 1});
  Var y = conv2d(x, w, {.stride = 2, .groups = 2});
  EXPECT_EQ(y.shape(), (Shape{1, 2, 2, 2}));
  expect_values(y.value(), {0, 4, 12, 16, -9, -11, -15, -17});
  // padding 1, dilation 2, 2x2 kernel of ones over a 3x3 of ones: each output counts the taps
  // that land inside the image.
  Var z = conv2d(Tensor::ones({1, 1, 3, 3}, DType::f64), Tensor::ones({1, 1, 2, 2}, DType::f64),
                 {.padding = 1, .dilation = 2});
  EXPECT_EQ(z.shape(), (Shape{1, 1, 3, 3}));
  expect_values(z.value(), {1, 2, 1, 2, 4, 2, 1, 2, 1});
}

// float32 3x3 stride-1 convolutions with >= 16 channels in and out run Winograd by default:
// forward, input gradient and weight gradient stay within 1e-5 of float64 (relative to the
// largest magnitude; measured 1.8e-6), the direct algorithm within 2e-6 (measured 4e-7), and
// where the CPU runs Winograd the two really are different computations.
TEST(Conv2d, WinogradStaysCloseToFloat64AndCanBeTurnedOff) {
  const Tensor x = dg_test::rand64({2, 16, 10, 9}, 31);
  const Tensor w = dg_test::rand64({32, 16, 3, 3}, 32, -0.25, 0.25);
  const Tensor g = dg_test::rand64({2, 32, 10, 9}, 33);
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
  expect_values(y.value(), {1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  // output_padding adds a row and a column that only the bias reaches.
  Var z = conv_transpose2d(x, w, f64({0.5}, {1}), {.stride = 2, .output_padding = 1});
  EXPECT_EQ(z.shape(), (Shape{1, 1, 5, 5}));
  EXPECT_DOUBLE_EQ(z.value().at(24), 0.5);
  EXPECT_DOUBLE_EQ(z.value().at(0), 1.5);
}

struct ConvCase {
  int64_t N, C, H, W, O, kH, kW, sh, sw, ph, pw, dh, dw, groups, oph, opw;
  bool bias;

  // For the failure trace; output padding only where the case has it (transposed ones).
  std::string describe(int index) const {
    const std::string output_padding =
        oph || opw ? fmt::format(" op{}x{}", oph, opw) : std::string();
    return fmt::format("case {}: N{} C{} {}x{} O{} k{}x{} s{}x{} p{}x{} d{}x{} g{}{} bias {}",
                       index, N, C, H, W, O, kH, kW, sh, sw, ph, pw, dh, dw, groups, output_padding,
                       bias);
  }
};

// Random valid configurations (the property-test issue widens this with RapidCheck).
std::vector<ConvCase> random_cases(uint64_t seed, int count, bool transposed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  std::vector<ConvCase> out;
  while (static_cast<int>(out.size()) < count) {
    ConvCase c{};
    c.groups = pick(1, 3);
    c.N = pick(1, 2);
    c.C = c.groups * pick(1, 2);
    c.O = c.groups * pick(1, 2);
    c.kH = pick(1, 3), c.kW = pick(1, 3), c.sh = pick(1, 3), c.sw = pick(1, 3);
    c.dh = pick(1, 2), c.dw = pick(1, 2);
    c.ph = pick(0, 2), c.pw = pick(0, 2);
    c.H = pick(1, 6), c.W = pick(1, 6);
    c.bias = pick(0, 1);
    if (transposed) {
      c.oph = pick(0, std::max(c.sh, c.dh) - 1), c.opw = pick(0, std::max(c.sw, c.dw) - 1);
      if ((c.H - 1) * c.sh - 2 * c.ph + c.dh * (c.kH - 1) + c.oph + 1 < 1) continue;
      if ((c.W - 1) * c.sw - 2 * c.pw + c.dw * (c.kW - 1) + c.opw + 1 < 1) continue;
    } else {
      if (c.H + 2 * c.ph - c.dh * (c.kH - 1) - 1 < 0 || c.W + 2 * c.pw - c.dw * (c.kW - 1) - 1 < 0)
        continue;
    }
    out.push_back(c);
  }
  return out;
}

TEST(Conv2d, GradientsMatchFiniteDifferencesOverRandomConfigurations) {
  int index = 0;
  for (const ConvCase& c : random_cases(1, 12, false)) {
    SCOPED_TRACE(c.describe(index++));
    Conv2dOptions o{.stride = {c.sh, c.sw},
                    .padding = {c.ph, c.pw},
                    .dilation = {c.dh, c.dw},
                    .groups = c.groups};
    std::vector<Tensor> in{
        Tensor::randn({c.N, c.C, c.H, c.W}, 10 + index, DType::f64),
        Tensor::randn({c.O, c.C / c.groups, c.kH, c.kW}, 20 + index, DType::f64)};
    if (c.bias) in.push_back(Tensor::randn({c.O}, 30 + index, DType::f64));
    expect_gradients_ok(
        [&](const std::vector<Var>& v) {
          return std::vector<Var>{v.size() == 3 ? conv2d(v[0], v[1], v[2], o)
                                                : conv2d(v[0], v[1], o)};
        },
        in);
  }
}

TEST(ConvTranspose2d, GradientsMatchFiniteDifferencesOverRandomConfigurations) {
  int index = 0;
  for (const ConvCase& c : random_cases(2, 12, true)) {
    SCOPED_TRACE(c.describe(index++));
    ConvTranspose2dOptions o{.stride = {c.sh, c.sw},
                             .padding = {c.ph, c.pw},
                             .output_padding = {c.oph, c.opw},
                             .dilation = {c.dh, c.dw},
                             .groups = c.groups};
    std::vector<Tensor> in{
        Tensor::randn({c.N, c.C, c.H, c.W}, 40 + index, DType::f64),
        Tensor::randn({c.C, c.O / c.groups, c.kH, c.kW}, 50 + index, DType::f64)};
    if (c.bias) in.push_back(Tensor::randn({c.O}, 60 + index, DType::f64));
    expect_gradients_ok(
        [&](const std::vector<Var>& v) {
          return std::vector<Var>{v.size() == 3 ? conv_transpose2d(v[0], v[1], v[2], o)
                                                : conv_transpose2d(v[0], v[1], o)};
        },
        in);
  }
}

// <conv2d(x, w), y> = <x, conv_transpose2d(y, w)>: the transposed convolution is the adjoint.
TEST(ConvTranspose2d, IsTheAdjointOfConv2d) {
  for (const ConvCase& c : random_cases(3, 20, false)) {
    Conv2dOptions o{.stride = {c.sh, c.sw},
                    .padding = {c.ph, c.pw},
                    .dilation = {c.dh, c.dw},
                    .groups = c.groups};
    Tensor x = Tensor::randn({c.N, c.C, c.H, c.W}, 1, DType::f64);
    Tensor w = Tensor::randn({c.O, c.C / c.groups, c.kH, c.kW}, 2, DType::f64);
    Var y = conv2d(x, w, o);
    Tensor g = Tensor::randn(y.shape(), 3, DType::f64);
    const int64_t oph = c.H - ((y.shape()[2] - 1) * c.sh - 2 * c.ph + c.dh * (c.kH - 1) + 1);
    const int64_t opw = c.W - ((y.shape()[3] - 1) * c.sw - 2 * c.pw + c.dw * (c.kW - 1) + 1);
    Var xt = conv_transpose2d(g, w,
                              {.stride = {c.sh, c.sw},
                               .padding = {c.ph, c.pw},
                               .output_padding = {oph, opw},
                               .dilation = {c.dh, c.dw},
                               .groups = c.groups});
    ASSERT_EQ(xt.shape(), x.shape());
    double lhs = sum(y * Var(g)).item(), rhs = sum(Var(x) * xt).item();
    EXPECT_NEAR(lhs, rhs, 1e-10 * (1 + std::abs(lhs)));
  }
}

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

TEST(ConvErrors, NameTheOpTheArgumentTheShapesAndTheRule) {
  Tensor x = Tensor::zeros({1, 3, 8, 8}), w = Tensor::zeros({16, 4, 3, 3});
  expect_error([&] { conv2d(x, w); }, "conv2d at ",
               ": x has 3 channels but w [16,4,3,3] with groups=1 expects 4 (w.shape[1]*groups)");
  expect_error(
      [&] {
        conv2d(Tensor::zeros({1, 4, 2, 2}), w);
      },
      "conv2d at ",
      ": kernel [3,3] with stride [1,1], padding [0,0], dilation [1,1] does not fit in "
      "input 2x2 (output would be 0x0)");
  expect_error(
      [&] {
        conv2d(Tensor::zeros({1, 4, 8}), w);
      },
      "conv2d at ", ": x must be 4-D [N,C,H,W], got [1,4,8]");
  expect_error(
      [&] {
        conv2d(Tensor::zeros({1, 6, 8, 8}), Tensor::zeros({5, 2, 3, 3}), {.groups = 3});
      },
      "which groups=3 does not divide");
  expect_error(
      [&] {
        conv2d(Tensor::zeros({1, 4, 8, 8}), w, Tensor::zeros({8}));
      },
      "conv2d at ", ": b is [8] but the output has 16 channels; b must be [16]");
  expect_error(
      [&] {
        conv2d(Tensor::zeros({1, 4, 8, 8}), w, {.stride = 0});
      },
      "stride must be at least 1");
  expect_error(
      [&] {
        conv2d(Tensor::zeros({1, 4, 8, 8}), Tensor::zeros({16, 4, 3, 3}, DType::f64));
      },
      "conv2d at ", ": input 'w' is float64 but 'x' is float32");
  expect_error(
      [&] {
        conv_transpose2d(Tensor::zeros({1, 3, 4, 4}), Tensor::zeros({4, 2, 3, 3}));
      },
      "conv_transpose2d at ", ": x has 3 channels but w [4,2,3,3] expects 4 (w.shape[0]");
  expect_error(
      [&] {
        conv_transpose2d(Tensor::zeros({1, 4, 4, 4}), Tensor::zeros({4, 2, 3, 3}),
                         {.stride = 2, .output_padding = 2});
      },
      "conv_transpose2d at ",
      ": output_padding [2,2] must be smaller than max(stride, dilation) per axis "
      "([2,2])");
  expect_error(
      [&] {
        conv1x1(Tensor::zeros({1, 4, 4, 4}), Tensor::zeros({2, 4, 3, 3}));
      },
      "conv1x1 at ", ": w must be [O,C,1,1], got [2,4,3,3]");
  expect_error(
      [&] {
        bias_add(Tensor::zeros({2, 3, 4, 4}), Tensor::zeros({4}));
      },
      "bias_add at ", ": b is [4] but x [2,3,4,4] has 3 channels (axis 1); b must be [3]");
}

}  // namespace
}  // namespace dg
