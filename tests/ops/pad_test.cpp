// The padding family: pad2d (constant, reflect, replicate, as F.pad) and pad2d_backward.
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

// One 2x3 plane, [[1, 2, 3], [4, 5, 6]], padded left 2, right 1, top 1, bottom 0; the values are
// torch.nn.functional.pad(x, (2, 1, 1, 0), mode) for each mode.
TEST(Pad2d, ModesFollowPyTorch) {
  Var x = f64({1, 2, 3, 4, 5, 6}, {1, 1, 2, 3});
  const Ints pads{2, 1, 1, 0};
  EXPECT_TRUE(ValuesNear(pad2d(x, {.pads = pads, .value = -1}), {1, 1, 3, 6},
                         {-1, -1, -1, -1, -1, -1,  //
                          -1, -1, 1, 2, 3, -1,     //
                          -1, -1, 4, 5, 6, -1}));
  EXPECT_TRUE(ValuesNear(pad2d(x, {.pads = pads, .mode = "reflect"}), {1, 1, 3, 6},
                         {6, 5, 4, 5, 6, 5,  //
                          3, 2, 1, 2, 3, 2,  //
                          6, 5, 4, 5, 6, 5}));
  EXPECT_TRUE(ValuesNear(pad2d(x, {.pads = pads, .mode = "replicate"}), {1, 1, 3, 6},
                         {1, 1, 1, 2, 3, 3,  //
                          1, 1, 1, 2, 3, 3,  //
                          4, 4, 4, 5, 6, 6}));
}

// The gradient goes back to where each padded cell was copied from: reflected and replicated
// copies add up, constant padding has no source. For a sum, each input cell's gradient is the
// number of cells that read it.
TEST(Pad2d, GradientCountsTheCopies) {
  dg::Tape tape;
  Var x = variable(test::f64({1, 2, 3, 4, 5, 6}, {1, 1, 2, 3}));
  const Ints pads{2, 1, 1, 0};
  EXPECT_TRUE(
      ValuesNear(grad(sum(pad2d(x, {.pads = pads})), {x})[0], {1, 1, 2, 3}, {1, 1, 1, 1, 1, 1}));
  EXPECT_TRUE(ValuesNear(grad(sum(pad2d(x, {.pads = pads, .mode = "reflect"})), {x})[0],
                         {1, 1, 2, 3}, {1, 3, 2, 2, 6, 4}));
  EXPECT_TRUE(ValuesNear(grad(sum(pad2d(x, {.pads = pads, .mode = "replicate"})), {x})[0],
                         {1, 1, 2, 3}, {6, 2, 4, 3, 1, 2}));
  // Second order: the gradient is linear in g, and pad2d_backward's VJP is pad2d itself.
  for (const char* mode : {"constant", "reflect", "replicate"}) {
    SCOPED_TRACE(mode);
    expect_gradients_ok(
        [mode](const std::vector<Var>& v) {
          return std::vector<Var>{pad2d(v[0], {.pads = {1, 2, 2, 1}, .mode = mode, .value = 0.5})};
        },
        {Tensor::randn({2, 3, 4, 5}, 1, DType::f64)});
  }
}

TEST(Pad2d, ErrorsNameTheRule) {
  Var x = f64({1, 2, 3, 4, 5, 6}, {1, 1, 2, 3});
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)pad2d(x, {.pads = {1, 1}});
      },
      {"pad2d at ", "pads must be 4 values [left, right, top, bottom], got [1,1]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)pad2d(x, {.pads = {0, 0, 2, 0}, .mode = "reflect"});
      },
      {"pad2d at ", "reflect padding must be smaller than the padded axis", "2x3 plane"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)pad2d(x, {.pads = {1, 0, 0, 0}, .mode = "circular"});
      },
      {"pad2d at ",
       "mode must be \"constant\", \"reflect\" or \"replicate\", "
       "got \"circular\""}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)pad2d(x, {.pads = {-1, 0, 0, 0}});
      },
      {"pad2d at ", "pads must not be negative"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)pad2d(f64({1}, {1}), {.pads = {1, 1, 1, 1}});
      },
      {"pad2d at ", "x must have at least 2 axes"}));
}

}  // namespace
}  // namespace dg

// ---- how each op of this family is called through its typed function ---------------------
// (tests/typed_ops_test.cpp compares each with the call by name; an op missing here fails there)

namespace typed_calls_pad {
using namespace dg;
using Vars = std::vector<dg::Var>;

const bool listed = dg::test::list_typed_calls({
    {"pad2d",
     [](const Vars& in, const Attrs& a) {
       return Vars{pad2d(
           in[0], {.pads = a.ints("pads"), .mode = a.string("mode"), .value = a.real("value")})};
     }},
    {"pad2d_backward",
     [](const Vars& in, const Attrs& a) {
       return Vars{pad2d_backward(in[0], a.ints("pads"), a.string("mode"), a.pair("input_size"))};
     }},
});
}  // namespace typed_calls_pad
