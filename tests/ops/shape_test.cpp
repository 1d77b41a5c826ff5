// The shape family: cat, reshape, flatten, permute, narrow, narrow_backward (int64 too for those
// that only move data).
#include <gtest/gtest.h>

#include "deltagraph/deltagraph.h"
#include "test_util.h"
#include "typed_calls.h"

using dg::DType;
using dg::Ints;
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
Var iota(const Shape& s) { return dg::input(Tensor::arange(s.product(), DType::f64).reshape(s)); }

}  // namespace

// ---- forward ----------------------------------------------------------------------------

TEST(Shape, ReshapeForward) {
  Var x = iota({2, 3});
  Var y = dg::reshape(x, {3, 2});
  EXPECT_TRUE(ValuesNear(y, {3, 2}, {0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(dg::reshape(x, {-1}).shape(), (Shape{6}));
  EXPECT_EQ(dg::reshape(x, {1, -1, 2}).shape(), (Shape{1, 3, 2}));
  EXPECT_EQ(dg::reshape(iota({1}), {}).shape(), (Shape{}));
  EXPECT_EQ(dg::reshape(iota({2, 3, 4}), {2, 1, 3, 1, 4, 1}).shape(), (Shape{2, 1, 3, 1, 4, 1}));
}

TEST(Shape, FlattenForward) {
  Var y = dg::flatten(iota({2, 3, 4}));
  EXPECT_EQ(y.shape(), (Shape{2, 12}));
  EXPECT_EQ(y.value().at(13), 13);
  EXPECT_EQ(dg::flatten(iota({2, 3})).shape(), (Shape{2, 3}));
  EXPECT_EQ(dg::flatten(iota({5, 1, 2, 1, 3})).shape(), (Shape{5, 6}));
  EXPECT_EQ(dg::flatten(iota({0, 3, 4})).shape(), (Shape{0, 12}));  // an empty batch
}

TEST(Shape, PermuteForward) {
  Var x = iota({2, 3, 4});
  Var y = dg::permute(x, {2, 0, 1});
  ASSERT_EQ(y.shape(), (Shape{4, 2, 3}));
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) EXPECT_EQ(y.value().at((k * 2 + i) * 3 + j), i * 12 + j * 4 + k);
  EXPECT_TRUE(ValuesNear(dg::permute(iota({2, 3}), {1, 0}), {3, 2}, {0, 3, 1, 4, 2, 5}));
  EXPECT_TRUE(ValuesNear(dg::permute(iota({2, 3}), {0, 1}), {2, 3}, {0, 1, 2, 3, 4, 5}));
  EXPECT_TRUE(ValuesNear(dg::permute(in({5}, {}), Ints{}), {}, {5}));
  // 6-D: reversing the axes is a full transpose.
  Var z = dg::permute(iota({2, 1, 3, 2, 1, 2}), {5, 4, 3, 2, 1, 0});
  ASSERT_EQ(z.shape(), (Shape{2, 1, 2, 3, 1, 2}));
  // z[a,0,c,d,0,f] = x[f,0,d,c,0,a], x strides (12,12,4,2,2,1).
  EXPECT_EQ(z.value().at(1), 12);              // [0,0,0,0,0,1] -> x[1,0,0,0,0,0]
  EXPECT_EQ(z.value().at(z.numel() - 1), 23);  // the last element stays last
  // NCHW -> NHWC and back is the identity.
  Var img = iota({2, 3, 2, 2});
  Var back = dg::permute(dg::permute(img, {0, 2, 3, 1}), {0, 3, 1, 2});
  EXPECT_EQ(back.value().to_vector(), img.value().to_vector());
}

TEST(Shape, NarrowForward) {
  Var x = iota({2, 4});
  EXPECT_TRUE(ValuesNear(dg::narrow(x, 1, 1, 2), {2, 2}, {1, 2, 5, 6}));
  EXPECT_TRUE(ValuesNear(dg::narrow(x, -1, 2, 2), {2, 2}, {2, 3, 6, 7}));
  EXPECT_TRUE(ValuesNear(dg::narrow(x, 0, 1, 1), {1, 4}, {4, 5, 6, 7}));
  EXPECT_TRUE(ValuesNear(dg::narrow(x, -2, 0, 2), {2, 4}, {0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(dg::narrow(x, 1, 4, 0).shape(), (Shape{2, 0}));
  Var y = dg::narrow(iota({2, 3, 4}), 1, 2, 1);
  EXPECT_TRUE(ValuesNear(y, {2, 1, 4}, {8, 9, 10, 11, 20, 21, 22, 23}));
}

TEST(Shape, NarrowBackwardForward) {
  Var g = in({1, 2, 3, 4}, {2, 2});
  EXPECT_TRUE(ValuesNear(dg::narrow_backward(g, 1, 1, 4), {2, 4}, {0, 1, 2, 0, 0, 3, 4, 0}));
  EXPECT_TRUE(ValuesNear(dg::narrow_backward(g, 0, 2, 4), {4, 2}, {0, 0, 0, 0, 1, 2, 3, 4}));
  EXPECT_TRUE(ValuesNear(dg::narrow_backward(g, -1, 0, 3), {2, 3}, {1, 2, 0, 3, 4, 0}));
}

// Ops that only move data take int64 tensors too: per-pixel labels [N, H*W] laid out as
// [N, H, W], their channels reordered, a window of them.
TEST(Shape, DataMovingOpsTakeInt64Labels) {
  std::vector<int64_t> values(2 * 6);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int64_t>(i % 5);
  Var labels = dg::input(Tensor::from(values, {2, 6}));
  Var grid = dg::reshape(labels, {2, 2, 3});
  EXPECT_EQ(grid.dtype(), DType::i64);
  EXPECT_EQ(grid.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(grid.value().to_vector(), labels.value().to_vector());
  EXPECT_EQ(dg::flatten(grid).shape(), (Shape{2, 6}));
  Var swapped = dg::permute(grid, {0, 2, 1});  // [2, 3, 2]
  EXPECT_EQ(swapped.dtype(), DType::i64);
  EXPECT_EQ(swapped.value().to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 0, 1, 4, 2, 0, 3, 1}));
  Var window = dg::narrow(grid, 2, 1, 2);  // [2, 2, 2]
  EXPECT_EQ(window.value().to_vector(), (std::vector<double>{1, 2, 4, 0, 2, 3, 0, 1}));
  // Still no gradient through labels, and float-only ops still say what they need.
  EXPECT_FALSE(window.requires_grad());
  EXPECT_TRUE(ThrowsError([&] { (void)dg::relu(grid); }, {"relu", "must be float32 or float64"}));
}

TEST(Shape, HandGradients) {
  dg::Tape tape;
  Var x = dg::variable(Tensor::arange(8, DType::f64).reshape({2, 4}));
  auto g = dg::grad({dg::narrow(x, 1, 1, 2)}, {x}, {dg::constant(f64({1, 2, 3, 4}, {2, 2}))});
  EXPECT_TRUE(ValuesNear(g[0], {2, 4}, {0, 1, 2, 0, 0, 3, 4, 0}));
  auto gp = dg::grad({dg::permute(x, {1, 0})}, {x},
                     {dg::constant(Tensor::arange(8, DType::f64).reshape({4, 2}))});
  EXPECT_TRUE(ValuesNear(gp[0], {2, 4}, {0, 2, 4, 6, 1, 3, 5, 7}));
  auto gr = dg::grad({dg::reshape(x, {8})}, {x}, {dg::constant(Tensor::arange(8, DType::f64))});
  EXPECT_TRUE(ValuesNear(gr[0], {2, 4}, {0, 1, 2, 3, 4, 5, 6, 7}));
}

// ---- gradient checks --------------------------------------------------------------------

TEST(Shape, ReshapeFlattenGradientChecks) {
  struct Case {
    Shape from, to;
  };
  uint64_t seed = 800;
  for (const Case& c : std::vector<Case>{{{2, 3}, {3, 2}},
                                         {{2, 3, 4}, {-1}},
                                         {{2, 3, 4}, {4, -1, 2}},
                                         {{1}, {}},
                                         {{6}, {1, 2, 1, 3}}}) {
    const Shape to = c.to;
    Fn f = [to](const Vars& v) { return Vars{dg::reshape(v[0], to)}; };
    Fn f2 = [to](const Vars& v) {
      Var r = dg::reshape(v[0], to);
      return Vars{dg::mul(r, r)};
    };
    {
      SCOPED_TRACE(fmt::format("reshape {} -> {}", c.from, to));
      expect_gradients_ok(f, {dg::test::rand64(c.from, ++seed)});
    }
    {
      SCOPED_TRACE(fmt::format("reshape^2 {} -> {}", c.from, to));
      expect_gradients_ok(f2, {dg::test::rand64(c.from, ++seed)});
    }
  }
  for (const Shape& s : {Shape{2, 3}, Shape{2, 3, 4}, Shape{3, 1, 2, 2}}) {
    Fn f = [](const Vars& v) { return Vars{dg::flatten(v[0])}; };
    Fn f2 = [](const Vars& v) {
      Var r = dg::flatten(v[0]);
      return Vars{dg::tanh(r)};
    };
    {
      SCOPED_TRACE(fmt::format("flatten {}", s));
      expect_gradients_ok(f, {dg::test::rand64(s, ++seed)});
    }
    {
      SCOPED_TRACE(fmt::format("tanh(flatten) {}", s));
      expect_gradients_ok(f2, {dg::test::rand64(s, ++seed)});
    }
  }
}

TEST(Shape, PermuteGradientChecks) {
  struct Case {
    Shape shape;
    Ints dims;
  };
  uint64_t seed = 900;
  for (const Case& c : std::vector<Case>{{{2, 3}, {1, 0}},
                                         {{2, 3, 4}, {2, 0, 1}},
                                         {{2, 3, 4}, {0, 2, 1}},
                                         {{2, 3, 1, 2}, {0, 2, 3, 1}},
                                         {{4}, {0}},
                                         {{2, 1, 3, 1, 2, 2}, {5, 3, 1, 0, 2, 4}}}) {
    const Ints dims = c.dims;
    Fn f = [dims](const Vars& v) { return Vars{dg::permute(v[0], dims)}; };
    Fn f2 = [dims](const Vars& v) {
      Var p = dg::permute(v[0], dims);
      return Vars{dg::mul(p, p)};
    };
    {
      SCOPED_TRACE(fmt::format("permute {} {}", c.shape, dims));
      expect_gradients_ok(f, {dg::test::rand64(c.shape, ++seed)});
    }
    {
      SCOPED_TRACE(fmt::format("permute^2 {} {}", c.shape, dims));
      expect_gradients_ok(f2, {dg::test::rand64(c.shape, ++seed)});
    }
  }
}

TEST(Shape, NarrowGradientChecks) {
  struct Case {
    Shape shape;
    int64_t axis, start, length;
  };
  uint64_t seed = 1000;
  for (const Case& c : std::vector<Case>{{{5}, 0, 1, 3},
                                         {{2, 4}, 1, 1, 2},
                                         {{2, 4}, -1, 0, 4},
                                         {{3, 2, 4}, 0, 2, 1},
                                         {{3, 2, 4}, 1, 1, 1},
                                         {{3, 2, 4}, 2, 1, 3},
                                         {{2, 3}, 1, 3, 0}}) {
    Fn f = [c](const Vars& v) { return Vars{dg::narrow(v[0], c.axis, c.start, c.length)}; };
    Fn f2 = [c](const Vars& v) {
      Var n = dg::narrow(v[0], c.axis, c.start, c.length);
      return Vars{dg::mul(n, n)};
    };
    std::string what =
        fmt::format("narrow {} axis {} start {} length {}", c.shape, c.axis, c.start, c.length);
    {
      SCOPED_TRACE(what);
      expect_gradients_ok(f, {dg::test::rand64(c.shape, ++seed)});
    }
    {
      SCOPED_TRACE(what + " squared");
      expect_gradients_ok(f2, {dg::test::rand64(c.shape, ++seed)});
    }
  }
}

TEST(Shape, NarrowBackwardGradientChecks) {
  struct Case {
    Shape shape;
    int64_t axis, start, size;
  };
  uint64_t seed = 1100;
  for (const Case& c : std::vector<Case>{
           {{3}, 0, 1, 5}, {{2, 2}, 1, 1, 4}, {{2, 3, 2}, 0, 0, 3}, {{2, 3, 2}, -1, 2, 4}}) {
    Fn f = [c](const Vars& v) { return Vars{dg::narrow_backward(v[0], c.axis, c.start, c.size)}; };
    Fn f2 = [c](const Vars& v) {
      Var n = dg::narrow_backward(v[0], c.axis, c.start, c.size);
      return Vars{dg::mul(n, dg::add_scalar(n, 1.0))};
    };
    std::string what = fmt::format("narrow_backward {} axis {} start {} size {}", c.shape, c.axis,
                                   c.start, c.size);
    {
      SCOPED_TRACE(what);
      expect_gradients_ok(f, {dg::test::rand64(c.shape, ++seed)});
    }
    {
      SCOPED_TRACE(what + " composed");
      expect_gradients_ok(f2, {dg::test::rand64(c.shape, ++seed)});
    }
  }
}

// ---- shape-rule errors ------------------------------------------------------------------

TEST(Shape, ReshapeErrors) {
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::reshape(iota({2, 3}), {-1, -1});
      },
      "reshape at ", ": target shape [-1,-1] has more than one -1"));
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::reshape(iota({2, 3}), {4});
      },
      "reshape at ", ": cannot reshape 6 elements into [4] (4 elements)"));
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::reshape(iota({2, 3}), {4, -1});
      },
      "reshape at ", ": cannot reshape 6 elements into [4,-1]: 6 is not a multiple of 4"));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)dg::reshape(iota({2, 3}), {-3, 2});
      },
      {"reshape", "negative"}));
  EXPECT_TRUE(ThrowsError([] { (void)dg::reshape(iota({2, 0}), {0, -1}); }, {"reshape", "[0,-1]"}));
  EXPECT_THROW((void)dg::reshape(iota({2, 3}), {5}), dg::ShapeError);
}

TEST(Shape, FlattenErrors) {
  EXPECT_TRUE(ThrowsExactly([] { (void)dg::flatten(iota({5})); }, "flatten at ",
                            ": x must have at least 2 axes [N, ...], got [5]"));
  EXPECT_TRUE(ThrowsError([] { (void)dg::flatten(in({1}, {})); }, {"flatten", "got []"}));
}

TEST(Shape, PermuteErrors) {
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::permute(iota({2, 3, 4}), {0, 1});
      },
      "permute at ", ": dims [0,1] must list each of the 3 axes of x [2,3,4] once"));
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::permute(iota({2, 3, 4}), {0, 0, 1});
      },
      "permute at ", ": dims [0,0,1] is not a permutation of 0..2 (x is [2,3,4])"));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)dg::permute(iota({2, 3, 4}), {0, 1, 3});
      },
      {"permute", "[0,1,3]", "not a permutation"}));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)dg::permute(iota({2, 3}), {-1, 0});
      },
      {"permute", "not a permutation"}));
}

TEST(Shape, NarrowErrors) {
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::narrow(iota({2, 4}), 1, 2, 3);
      },
      "narrow at ", ": the window start 2 length 3 does not fit axis 1 of size 4 (x is [2,4])"));
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::narrow(iota({2, 4}), 2, 0, 1);
      },
      "narrow at ", ": axis 2 is out of range for [2,4] of rank 2"));
  EXPECT_TRUE(ThrowsError([] { (void)dg::narrow(iota({2, 4}), -3, 0, 1); }, {"narrow", "axis -3"}));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)dg::narrow(iota({2, 4}), 1, -1, 2);
      },
      {"narrow", "start -1"}));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)dg::narrow(iota({2, 4}), 1, 0, -1);
      },
      {"narrow", "length -1"}));
}

TEST(Shape, NarrowBackwardErrors) {
  EXPECT_TRUE(ThrowsExactly(
      [] {
        (void)dg::narrow_backward(iota({2, 2}), 1, 3, 4);
      },
      "narrow_backward at ", ": g's axis 1 (2 long) placed at 3 does not fit in size 4"));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)dg::narrow_backward(iota({2, 2}), 1, -1, 4);
      },
      {"narrow_backward", "placed at -1"}));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)dg::narrow_backward(iota({2, 2}), 5, 0, 4);
      },
      {"narrow_backward", "axis 5 is out of range"}));
}

// ---- how each op of this family is called through its typed function ---------------------
// (tests/typed_ops_test.cpp compares each with the call by name; an op missing here fails there)

// ---- cat --------------------------------------------------------------------------------------

TEST(Cat, JoinsAlongAnyAxisAsTorchCat) {
  Var a = iota({2, 1, 2}), b = in({10, 11, 12, 13, 14, 15, 16, 17}, {2, 2, 2});
  EXPECT_TRUE(ValuesNear(dg::cat({a, b}), {2, 3, 2}, {0, 1, 10, 11, 12, 13, 2, 3, 14, 15, 16, 17}));
  EXPECT_TRUE(ValuesNear(dg::cat({a, a, a}, -1), {2, 1, 6}, {0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3}));
  EXPECT_TRUE(ValuesNear(dg::cat({a}, 0), {2, 1, 2}, {0, 1, 2, 3}));
  // Labels: int64 tensors join too.
  Var labels = dg::cat({dg::input(Tensor::arange(2, DType::i64).reshape({1, 2})),
                        dg::input(Tensor::arange(2, DType::i64).reshape({1, 2}))},
                       0);
  EXPECT_EQ(labels.dtype(), DType::i64);
  EXPECT_EQ(labels.value().values<int64_t>()[3], 1);
}

// Each input's gradient is its own slice of g; a skip connection used twice adds up.
TEST(Cat, GradientIsTheSlicesOfG) {
  dg::Tape tape;
  Var a = dg::variable(f64({1, 2}, {1, 2})), b = dg::variable(f64({3, 4, 5}, {1, 3}));
  Var y = dg::cat({a, b, a});
  auto g = dg::grad({y}, {a, b}, {dg::constant(f64({1, 2, 3, 4, 5, 6, 7}, {1, 7}))});
  EXPECT_TRUE(ValuesNear(g[0], {1, 2}, {1 + 6, 2 + 7}));
  EXPECT_TRUE(ValuesNear(g[1], {1, 3}, {3, 4, 5}));
  expect_gradients_ok(
      [](const Vars& v) {
        return Vars{dg::cat({v[0], v[1]}, 2)};
      },
      {Tensor::randn({2, 3, 2}, 1, DType::f64), Tensor::randn({2, 3, 4}, 2, DType::f64)});
}

TEST(Cat, ErrorsNameTheInputAndTheRule) {
  Var a = iota({2, 3}), b = iota({3, 3});
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::cat({a, b}, 1);
      },
      {"cat at ",
       "x2 is [3,3] but x1 is [2,3]; shapes must agree on every axis "
       "but axis 1"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::cat({a, b}, 2);
      },
      {"cat at ", "axis 2 is out of range for [2,3] of rank 2"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::cat({a, dg::input(Tensor::zeros({2, 3}, DType::i64))});
      },
      {"cat at ", "x2 is int64 but x1 is float64; every input must have the same dtype"}));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::cat(std::span<const Var>{}); },
                          {"cat", "expects at least 1 input (x1, ...), got 0"}));
}

namespace typed_calls_shape {
using namespace dg;
using Vars = std::vector<dg::Var>;

const bool listed = dg::test::list_typed_calls({
    {"cat", [](const Vars& in, const Attrs& a) { return Vars{cat(in, a.integer("axis"))}; }},
    {"reshape",
     [](const Vars& in, const Attrs& a) { return Vars{reshape(in[0], a.ints("shape"))}; }},
    {"flatten", [](const Vars& in, const Attrs&) { return Vars{flatten(in[0])}; }},
    {"permute",
     [](const Vars& in, const Attrs& a) { return Vars{permute(in[0], a.ints("dims"))}; }},
    {"narrow",
     [](const Vars& in, const Attrs& a) {
       return Vars{narrow(in[0], a.integer("axis"), a.integer("start"), a.integer("length"))};
     }},
    {"narrow_backward",
     [](const Vars& in, const Attrs& a) {
       return Vars{
           narrow_backward(in[0], a.integer("axis"), a.integer("start"), a.integer("size"))};
     }},
});
}  // namespace typed_calls_shape
