// Tensor: creation, dtypes, shapes, reshape, clone, conversion, printing and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "deltagraph/deltagraph.h"
#include "test_util.h"

using dg::DType;
using dg::Shape;
using dg::Tensor;
using dg::test::ThrowsError;
using dg::test::ValuesNear;

TEST(Tensor, DefaultIsUndefined) {
  Tensor t;
  EXPECT_FALSE(t.defined());
  EXPECT_TRUE(ThrowsError([&] { (void)t.item(); }, {"item"}));
  EXPECT_EQ(fmt::format("{}", t), "Tensor(undefined)");
}

TEST(Tensor, ZerosOnesFull) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_TRUE(z.defined());
  EXPECT_EQ(z.dtype(), DType::f32);  // the default dtype
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.dim(), 2);
  EXPECT_EQ(z.numel(), 6);
  EXPECT_EQ(z.nbytes(), 24u);
  EXPECT_TRUE(ValuesNear(z, {2, 3}, {0, 0, 0, 0, 0, 0}));

  Tensor o = Tensor::ones({4}, DType::f64);
  EXPECT_EQ(o.dtype(), DType::f64);
  EXPECT_EQ(o.nbytes(), 32u);
  EXPECT_TRUE(ValuesNear(o, {4}, {1, 1, 1, 1}));

  Tensor f = Tensor::full({2, 2}, -2.5, DType::f64);
  EXPECT_TRUE(ValuesNear(f, {2, 2}, {-2.5, -2.5, -2.5, -2.5}));

  Tensor i = Tensor::full({3}, 7, DType::i64);
  EXPECT_EQ(i.dtype(), DType::i64);
  EXPECT_EQ(i.data<int64_t>()[2], 7);

  Tensor s = Tensor::scalar(3.5, DType::f64);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item(), 3.5);

  Tensor empty = Tensor::zeros({2, 0, 3});
  EXPECT_EQ(empty.numel(), 0);
}

TEST(Tensor, FillOverwrites) {
  Tensor t = Tensor::zeros({3}, DType::f64);
  t.fill(4);
  EXPECT_TRUE(ValuesNear(t, {3}, {4, 4, 4}));
}

TEST(Tensor, FromCopiesValuesRowMajor) {
  std::vector<double> v{1, 2, 3, 4, 5, 6};
  Tensor t = Tensor::from(v, {2, 3});
  EXPECT_EQ(t.dtype(), DType::f64);
  v[0] = 100;  // a copy: later changes to the source do not show
  EXPECT_EQ(t.at(0), 1);
  EXPECT_EQ(t.at(5), 6);
  EXPECT_EQ(t.size(0), 2);
  EXPECT_EQ(t.size(1), 3);
  EXPECT_EQ(t.size(-1), 3);
  EXPECT_TRUE(ThrowsError([&] { (void)t.size(2); }, {"axis 2", "[2,3]"}));

  Tensor f = Tensor::from(std::vector<float>{1.5f, -2.f}, {2});
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_EQ(f.data<float>()[1], -2.f);

  Tensor i = Tensor::from(std::vector<int64_t>{1, -2, int64_t{1} << 40}, {3});
  EXPECT_EQ(i.dtype(), DType::i64);
  EXPECT_EQ(i.data<int64_t>()[2], int64_t{1} << 40);

  EXPECT_TRUE(ThrowsError(
      [] {
        (void)Tensor::from(std::vector<double>{1, 2, 3}, {2, 2});
      },
      {"Tensor::from", "3 values", "[2,2]"}));
}

TEST(Tensor, Arange) {
  EXPECT_TRUE(ValuesNear(Tensor::arange(5), {5}, {0, 1, 2, 3, 4}));
  Tensor a = Tensor::arange(4, DType::f64, 1.0, 0.5);
  EXPECT_EQ(a.dtype(), DType::f64);
  EXPECT_TRUE(ValuesNear(a, {4}, {1, 1.5, 2, 2.5}));
  Tensor i = Tensor::arange(3, DType::i64, 10, -3);
  EXPECT_EQ(i.dtype(), DType::i64);
  EXPECT_EQ(i.data<int64_t>()[0], 10);
  EXPECT_EQ(i.data<int64_t>()[2], 4);
  EXPECT_EQ(Tensor::arange(0).numel(), 0);
}

TEST(Tensor, RandnIsSeededAndReproducible) {
  Tensor a = Tensor::randn({1000}, 42, DType::f64);
  Tensor b = Tensor::randn({1000}, 42, DType::f64);
  Tensor c = Tensor::randn({1000}, 43, DType::f64);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_NE(a.to_vector(), c.to_vector());
  double mean = 0, var = 0;
  for (double x : a.to_vector()) mean += x / 1000;
  for (double x : a.to_vector()) var += (x - mean) * (x - mean) / 1000;
  EXPECT_NEAR(mean, 0, 0.15);
  EXPECT_NEAR(var, 1, 0.2);

  Tensor shifted = Tensor::randn({1000}, 42, DType::f64, 5, 2);
  for (int64_t i = 0; i < 1000; ++i) EXPECT_NEAR(shifted.at(i), 5 + 2 * a.at(i), 1e-12);

  Tensor f = Tensor::randn({10}, 42, DType::f32);
  EXPECT_EQ(f.dtype(), DType::f32);
  for (int64_t i = 0; i < 10; ++i) EXPECT_FLOAT_EQ(f.data<float>()[i], static_cast<float>(a.at(i)));

  EXPECT_TRUE(ThrowsError([] { (void)Tensor::randn({2}, 0, DType::i64); }, {"randn", "int64"}));
}

TEST(Tensor, UniformIsSeededAndInRange) {
  Tensor a = Tensor::uniform({500}, 7, DType::f64, -2, 3);
  Tensor b = Tensor::uniform({500}, 7, DType::f64, -2, 3);
  Tensor c = Tensor::uniform({500}, 8, DType::f64, -2, 3);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_NE(a.to_vector(), c.to_vector());
  double lo = 1e9, hi = -1e9;
  for (double x : a.to_vector()) {
    EXPECT_GE(x, -2);
    EXPECT_LT(x, 3);
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  EXPECT_LT(lo, -1.5);  // the whole range is used
  EXPECT_GT(hi, 2.5);
  Tensor f = Tensor::uniform({4}, 7);
  EXPECT_EQ(f.dtype(), DType::f32);
  for (double x : f.to_vector()) EXPECT_TRUE(x >= 0 && x < 1);
}

TEST(Tensor, DtypeNamesAndSizes) {
  EXPECT_STREQ(dg::dtype_name(DType::f32), "float32");
  EXPECT_STREQ(dg::dtype_name(DType::f64), "float64");
  EXPECT_STREQ(dg::dtype_name(DType::i64), "int64");
  EXPECT_EQ(dg::dtype_size(DType::f32), 4u);
  EXPECT_EQ(dg::dtype_size(DType::f64), 8u);
  EXPECT_EQ(dg::dtype_size(DType::i64), 8u);
  EXPECT_TRUE(dg::is_floating(DType::f32));
  EXPECT_TRUE(dg::is_floating(DType::f64));
  EXPECT_FALSE(dg::is_floating(DType::i64));
  EXPECT_EQ(dg::dtype_of<float>(), DType::f32);
  EXPECT_EQ(dg::dtype_of<double>(), DType::f64);
  EXPECT_EQ(dg::dtype_of<int64_t>(), DType::i64);
  EXPECT_EQ(fmt::format("{}", DType::f64), "float64");
}

TEST(Tensor, SixDimensionalShapes) {
  Tensor t = Tensor::arange(720, DType::f64).reshape({2, 3, 4, 5, 1, 6});
  EXPECT_EQ(t.dim(), 6);
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4, 5, 1, 6}));
  EXPECT_EQ(t.size(-1), 6);
  EXPECT_EQ(t.size(4), 1);
  EXPECT_EQ(t.numel(), 720);
  EXPECT_EQ(t.at(719), 719);
  EXPECT_EQ(dg::to_string(t.shape()), "[2,3,4,5,1,6]");
  Tensor z = Tensor::zeros({1, 2, 1, 2, 1, 2}, DType::f64);
  EXPECT_EQ(z.numel(), 8);
  // Shapes hold at most 8 dimensions.
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)Tensor::zeros({1, 1, 1, 1, 1, 1, 1, 1, 1});
      },
      {"more than 8"}));
  EXPECT_TRUE(ThrowsError([] { (void)Tensor::zeros({2, -1}); }, {"negative"}));
}

TEST(Tensor, ReshapeSharesStorage) {
  Tensor t = Tensor::arange(6, DType::f64);
  Tensor r = t.reshape({2, 3});
  EXPECT_EQ(r.shape(), (Shape{2, 3}));
  EXPECT_TRUE(r.shares_storage_with(t));
  EXPECT_EQ(t.shape(), (Shape{6}));  // the original keeps its shape
  r.data<double>()[4] = 40;
  EXPECT_EQ(t.at(4), 40);  // a write through the view shows in the original
}

TEST(Tensor, ReshapeInfersOneMinusOne) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.reshape({-1}).shape(), (Shape{24}));
  EXPECT_EQ(t.reshape({4, -1}).shape(), (Shape{4, 6}));
  EXPECT_EQ(t.reshape({-1, 2, 3}).shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(t.reshape({2, 1, -1, 1}).shape(), (Shape{2, 1, 12, 1}));
  EXPECT_EQ(Tensor::scalar(1).reshape({1, 1}).shape(), (Shape{1, 1}));
  EXPECT_EQ(Tensor::zeros({1}).reshape({}).shape(), (Shape{}));
}

TEST(Tensor, ReshapeErrors) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_TRUE(ThrowsError([&] { (void)t.reshape({-1, -1}); }, {"reshape", "more than one -1"}));
  EXPECT_TRUE(ThrowsError([&] { (void)t.reshape({5, 5}); }, {"reshape", "24 elements", "[5,5]"}));
  EXPECT_TRUE(ThrowsError([&] { (void)t.reshape({5, -1}); }, {"reshape", "24", "5"}));
  EXPECT_TRUE(ThrowsError([&] { (void)t.reshape({-2, 12}); }, {"reshape", "negative"}));
  EXPECT_THROW((void)t.reshape({7}), dg::ShapeError);
  EXPECT_THROW((void)t.reshape({-1, -1}), dg::Error);
}

TEST(Tensor, CopyIsShallowCloneIsDeep) {
  Tensor t = Tensor::arange(4, DType::f64);
  Tensor copy = t;
  EXPECT_TRUE(copy.shares_storage_with(t));
  EXPECT_FALSE(t.unique());

  Tensor c = t.clone();
  EXPECT_FALSE(c.shares_storage_with(t));
  EXPECT_TRUE(c.unique());
  EXPECT_EQ(c.shape(), t.shape());
  EXPECT_EQ(c.dtype(), t.dtype());
  c.data<double>()[0] = 99;
  EXPECT_EQ(t.at(0), 0);
  EXPECT_EQ(c.at(0), 99);
  EXPECT_EQ(c.at(3), 3);
  EXPECT_FALSE(Tensor().clone().defined());
}

TEST(Tensor, ToConverts) {
  Tensor d = dg::test::f64({1.5, -2.25, 3.75, 1e-3}, {2, 2});
  Tensor f = d.to(DType::f32);
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_EQ(f.shape(), (Shape{2, 2}));
  EXPECT_FALSE(f.shares_storage_with(d));
  EXPECT_FLOAT_EQ(f.data<float>()[1], -2.25f);
  EXPECT_FLOAT_EQ(f.data<float>()[3], 1e-3f);

  Tensor i = d.to(DType::i64);  // truncation towards zero, as static_cast
  EXPECT_EQ(i.data<int64_t>()[0], 1);
  EXPECT_EQ(i.data<int64_t>()[1], -2);
  EXPECT_EQ(i.data<int64_t>()[2], 3);

  Tensor back = i.to(DType::f64);
  EXPECT_TRUE(ValuesNear(back, {2, 2}, {1, -2, 3, 0}));

  Tensor same = d.to(DType::f64);  // already float64: the same tensor
  EXPECT_TRUE(same.shares_storage_with(d));

  // float32 rounding is visible after the round trip.
  Tensor third = dg::test::f64({1.0 / 3}, {1});
  EXPECT_NE(third.to(DType::f32).to(DType::f64).at(0), 1.0 / 3);
  EXPECT_NEAR(third.to(DType::f32).to(DType::f64).at(0), 1.0 / 3, 1e-7);
}

TEST(Tensor, AtItemToVector) {
  Tensor t = dg::test::f64({1, 2, 3}, {3});
  EXPECT_EQ(t.at(1), 2);
  EXPECT_EQ(t.to_vector(), (std::vector<double>{1, 2, 3}));
  EXPECT_TRUE(ThrowsError([&] { (void)t.at(3); }, {"index 3", "[3]"}));
  EXPECT_TRUE(ThrowsError([&] { (void)t.at(-1); }, {"index -1"}));
  EXPECT_EQ(Tensor::full({1, 1}, 2.5).item(), 2.5);  // one element, any rank
  EXPECT_EQ(Tensor::full({}, 7, DType::i64).item(), 7);
}

TEST(Tensor, Errors) {
  Tensor f = Tensor::zeros({2, 3});
  EXPECT_TRUE(ThrowsError([&] { (void)f.data<double>(); }, {"float64", "float32", "[2,3]"}));
  EXPECT_TRUE(ThrowsError([&] { (void)f.data<int64_t>(); }, {"int64", "float32"}));
  EXPECT_NO_THROW((void)f.data<float>());
  Tensor i = Tensor::zeros({2}, DType::i64);
  EXPECT_TRUE(ThrowsError([&] { (void)i.values<double>(); }, {"float64", "int64"}));
  const Tensor& ci = i;
  EXPECT_TRUE(ThrowsError([&] { (void)ci.data<float>(); }, {"float32", "int64"}));

  EXPECT_TRUE(ThrowsError([&] { (void)f.item(); }, {"item", "one element", "[2,3]"}));
  EXPECT_TRUE(ThrowsError([] { (void)Tensor::zeros({0}).item(); }, {"item", "[0]"}));
  EXPECT_TRUE(ThrowsError([] { (void)Tensor().data<float>(); }, {"undefined"}));
}

TEST(Tensor, FormatShowsDtypeShapeValues) {
  Tensor t = dg::test::f64({1, 2.5, -3, 4, 5, 6}, {2, 3});
  std::string s = fmt::format("{}", t);
  EXPECT_EQ(s, "Tensor(float64 [2,3] [[1, 2.5, -3],\n [4, 5, 6]])");
  EXPECT_EQ(dg::to_string(t), s);

  EXPECT_EQ(fmt::format("{}", Tensor::scalar(0.5)), "Tensor(float32 [] 0.5)");
  EXPECT_EQ(fmt::format("{}", Tensor::arange(3, DType::i64)), "Tensor(int64 [3] [0, 1, 2])");
  EXPECT_EQ(fmt::format("{}", Tensor::zeros({0})), "Tensor(float32 [0] [])");
  // Exactly six entries are all shown.
  EXPECT_EQ(fmt::format("{}", Tensor::arange(6, DType::i64)),
            "Tensor(int64 [6] [0, 1, 2, 3, 4, 5])");
}

TEST(Tensor, FormatElidesLongTensors) {
  std::string s = fmt::format("{}", Tensor::arange(100, DType::f64));
  EXPECT_EQ(s, "Tensor(float64 [100] [0, 1, 2, ..., 97, 98, 99])");
  EXPECT_EQ(s.find("50"), std::string::npos);

  std::string m = fmt::format("{}", Tensor::arange(200, DType::i64).reshape({20, 10}));
  EXPECT_NE(m.find("int64 [20,10]"), std::string::npos);
  EXPECT_NE(m.find("..."), std::string::npos);
  EXPECT_NE(m.find("[0, 1, 2, ..., 7, 8, 9]"), std::string::npos);              // first row
  EXPECT_NE(m.find("[190, 191, 192, ..., 197, 198, 199]"), std::string::npos);  // last row
  EXPECT_EQ(m.find("[100,"), std::string::npos);  // a middle row is elided
  EXPECT_LT(m.size(), 300u);
}

TEST(Tensor, Allclose) {
  Tensor a = dg::test::f64({1, 2}, {2});
  EXPECT_TRUE(dg::allclose(a, dg::test::f64({1, 2 + 1e-9}, {2})));
  EXPECT_FALSE(dg::allclose(a, dg::test::f64({1, 2.1}, {2})));
  EXPECT_FALSE(dg::allclose(a, dg::test::f64({1, 2}, {1, 2})));  // shapes differ
  EXPECT_FALSE(dg::allclose(dg::test::f64({NAN}, {1}), dg::test::f64({NAN}, {1})));
}
