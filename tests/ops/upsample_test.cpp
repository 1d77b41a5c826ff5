// The upsampling family: upsample_nearest2d and upsample_bilinear2d (F.interpolate) and their
// adjoints.
#include <gtest/gtest.h>

#include "test_util.h"
#include "typed_calls.h"

namespace dg {
namespace {

using test::expect_gradients_ok;
using test::ThrowsError;
using test::ValuesNear;

// One 2x3 plane [[0, 1, 2], [3, 4, 5]]; the values are F.interpolate's (PyTorch 1.13).
Var plane() { return input(Tensor::arange(6, DType::f64).reshape({1, 1, 2, 3})); }

TEST(UpsampleNearest2d, FollowsPyTorchsIndexRule) {
  EXPECT_TRUE(ValuesNear(upsample_nearest2d(plane(), {3, 5}), {1, 1, 3, 5},
                         {0, 0, 1, 1, 2, 0, 0, 1, 1, 2, 3, 3, 4, 4, 5}));
  EXPECT_TRUE(ValuesNear(upsample_nearest2d(plane(), {4, 6}), {1, 1, 4, 6},
                         {0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 3, 3, 4, 4, 5, 5}));
  EXPECT_TRUE(ValuesNear(upsample_nearest2d(plane(), {1, 2}), {1, 1, 1, 2}, {0, 1}));
}

TEST(UpsampleBilinear2d, FollowsPyTorchWithAndWithoutAlignCorners) {
  EXPECT_TRUE(ValuesNear(upsample_bilinear2d(plane(), {3, 4}), {1, 1, 3, 4},
                         {0.0, 0.625, 1.375, 2.0, 1.5, 2.125, 2.875, 3.5, 3.0, 3.625, 4.375, 5.0}));
  EXPECT_TRUE(ValuesNear(upsample_bilinear2d(plane(), {3, 4}, {.align_corners = true}),
                         {1, 1, 3, 4},
                         {0.0, 2.0 / 3, 4.0 / 3, 2.0, 1.5, 1.5 + 2.0 / 3, 1.5 + 4.0 / 3, 3.5, 3.0,
                          3 + 2.0 / 3, 3 + 4.0 / 3, 5.0}));
}

// The adjoints send each output pixel's gradient back to its sources: for a sum, each input
// pixel collects the total weight it contributed.
TEST(Upsample2d, GradientsAreTheTransposedMaps) {
  Tape tape;
  Var x = variable(Tensor::arange(6, DType::f64).reshape({1, 1, 2, 3}));
  EXPECT_TRUE(ValuesNear(grad(sum(upsample_nearest2d(x, {3, 5})), {x})[0], {1, 1, 2, 3},
                         {4, 4, 2, 2, 2, 1}));
  EXPECT_TRUE(ValuesNear(grad(sum(upsample_bilinear2d(x, {4, 6})), {x})[0], {1, 1, 2, 3},
                         {4, 4, 4, 4, 4, 4}));
  for (bool align : {false, true}) {
    SCOPED_TRACE(align);
    expect_gradients_ok(
        [align](const std::vector<Var>& v) {
          return std::vector<Var>{upsample_bilinear2d(v[0], {5, 3}, {.align_corners = align}),
                                  upsample_nearest2d(v[0], {3, 7})};
        },
        {Tensor::randn({2, 3, 4, 5}, 1, DType::f64)});
  }
}

TEST(Upsample2d, ErrorsNameTheRule) {
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)upsample_nearest2d(plane(), {0, 3});
      },
      {"upsample_nearest2d at ", "output_size must be positive [h, w], got [0,3]"}));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)upsample_bilinear2d(input(Tensor::zeros({2, 3}, DType::f64)), {4, 4});
      },
      {"upsample_bilinear2d at ", "x must be 4-D [N,C,H,W], got [2,3]"}));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)upsample_nearest2d_backward(plane(), {-1, 2});
      },
      {"upsample_nearest2d_backward at ", "input_size must be positive [h, w], got [-1,2]"}));
}

}  // namespace

namespace typed_calls_upsample {
using Vars = std::vector<Var>;
const bool listed = dg::test::list_typed_calls({
    {"upsample_nearest2d",
     [](const Vars& in, const Attrs& a) {
       return Vars{upsample_nearest2d(in[0], a.pair("output_size"))};
     }},
    {"upsample_nearest2d_backward",
     [](const Vars& in, const Attrs& a) {
       return Vars{upsample_nearest2d_backward(in[0], a.pair("input_size"))};
     }},
    {"upsample_bilinear2d",
     [](const Vars& in, const Attrs& a) {
       return Vars{upsample_bilinear2d(in[0], a.pair("output_size"),
                                       {.align_corners = a.boolean("align_corners")})};
     }},
    {"upsample_bilinear2d_backward",
     [](const Vars& in, const Attrs& a) {
       return Vars{
           upsample_bilinear2d_backward(in[0], a.pair("input_size"), a.boolean("align_corners"))};
     }},
});
}  // namespace typed_calls_upsample
}  // namespace dg
