// The linear-algebra family: matmul (with transpose flags) and linear.
#include <gtest/gtest.h>

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

// Naive row-major product of op(a) [M,K] and op(b) [K,N].
std::vector<double> naive(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const int64_t M = ta ? a.size(1) : a.size(0), K = ta ? a.size(0) : a.size(1);
  const int64_t N = tb ? b.size(0) : b.size(1);
  std::vector<double> y(M * N, 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < K; ++k)
        y[i * N + j] +=
            a.at(ta ? k * a.size(1) + i : i * K + k) * b.at(tb ? j * b.size(1) + k : k * N + j);
  return y;
}

}  // namespace

// ---- forward ----------------------------------------------------------------------------

TEST(Linalg, MatmulForward) {
  // [[1,2,3],[4,5,6]] @ [[1,0],[0,1],[1,1]] = [[4,5],[10,11]]
  Var a = in({1, 2, 3, 4, 5, 6}, {2, 3});
  Var b = in({1, 0, 0, 1, 1, 1}, {3, 2});
  EXPECT_TRUE(ValuesNear(dg::matmul(a, b), {2, 2}, {4, 5, 10, 11}));
  // a^T @ a^T-shaped: a^T [3,2] @ b^T [2,3]
  EXPECT_TRUE(ValuesNear(dg::matmul(a, b, {.transpose_a = true, .transpose_b = true}), {3, 3},
                         {1 + 0, 4, 1 + 4, 2, 5, 2 + 5, 3, 6, 3 + 6}));
  // a @ a^T = [[14,32],[32,77]]
  EXPECT_TRUE(ValuesNear(dg::matmul(a, a, {.transpose_b = true}), {2, 2}, {14, 32, 32, 77}));
  // a^T @ a
  EXPECT_TRUE(ValuesNear(dg::matmul(a, a, {.transpose_a = true}), {3, 3},
                         {17, 22, 27, 22, 29, 36, 27, 36, 45}));
  // Empty inner dimension: zeros.
  Var e1 = dg::input(Tensor::zeros({2, 0}, DType::f64)),
      e2 = dg::input(Tensor::zeros({0, 3}, DType::f64));
  EXPECT_TRUE(ValuesNear(dg::matmul(e1, e2), {2, 3}, {0, 0, 0, 0, 0, 0}));
}

TEST(Linalg, MatmulMatchesNaiveForAllTransposes) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (DType dtype : {DType::f64, DType::f32}) {
        const int64_t M = 37, K = 29, N = 41;  // odd sizes, not multiples of a vector width
        Tensor a = dg::test::rand64(ta ? Shape{K, M} : Shape{M, K}, 1).to(dtype);
        Tensor b = dg::test::rand64(tb ? Shape{N, K} : Shape{K, N}, 2).to(dtype);
        Var y = dg::matmul(dg::input(a), dg::input(b), {.transpose_a = ta, .transpose_b = tb});
        EXPECT_EQ(y.dtype(), dtype);
        EXPECT_TRUE(ValuesNear(y, {M, N}, naive(a, b, ta, tb), dtype == DType::f64 ? 1e-12 : 1e-5))
            << "ta " << ta << " tb " << tb << " " << dg::dtype_name(dtype);
      }
}

TEST(Linalg, LinearForward) {
  // x [2,3], w [2,3] (out 2, in 3), b [2]
  Var x = in({1, 2, 3, 4, 5, 6}, {2, 3});
  Var w = in({1, 0, -1, 0.5, 0.5, 0.5}, {2, 3});
  Var b = in({10, 20}, {2});
  EXPECT_TRUE(ValuesNear(dg::linear(x, w), {2, 2}, {-2, 3, -2, 7.5}));
  EXPECT_TRUE(ValuesNear(dg::linear(x, w, b), {2, 2}, {8, 23, 8, 27.5}));
  // Same as matmul with a transposed b plus a broadcast bias.
  Tensor xs = dg::test::rand64({5, 7}, 3), ws = dg::test::rand64({4, 7}, 4),
         bs = dg::test::rand64({4}, 5);
  Var lin = dg::linear(dg::input(xs), dg::input(ws), dg::input(bs));
  Var ref = dg::add(dg::matmul(dg::input(xs), dg::input(ws), {.transpose_b = true}), dg::input(bs));
  EXPECT_TRUE(dg::allclose(lin.value(), ref.value(), 1e-13, 1e-14));
  Var lin32 = dg::linear(dg::input(xs.to(DType::f32)), dg::input(ws.to(DType::f32)),
                         dg::input(bs.to(DType::f32)));
  EXPECT_EQ(lin32.dtype(), DType::f32);
  EXPECT_TRUE(dg::allclose(lin32.value().to(DType::f64), ref.value(), 1e-5, 1e-5));
}

// Shapes where the float32 GEMM computes (x w^T)^T = w x^T and transposes back, applying the
// bias on the way: few rows with many outputs and long rows, and fewer than 16 outputs (a
// classifier's last layer). With and without bias they must agree with float64.
TEST(Linalg, LinearComputedTransposedMatchesFloat64) {
  for (const auto& [N, in, out] :
       std::vector<std::tuple<int64_t, int64_t, int64_t>>{{6, 300, 64}, {40, 50, 10}}) {
    Tensor x = dg::test::rand64({N, in}, 11), w = dg::test::rand64({out, in}, 12),
           b = dg::test::rand64({out}, 13);
    for (bool with_bias : {false, true}) {
      Var ref = with_bias ? dg::linear(dg::input(x), dg::input(w), dg::input(b))
                          : dg::linear(dg::input(x), dg::input(w));
      Var y = with_bias ? dg::linear(dg::input(x.to(DType::f32)), dg::input(w.to(DType::f32)),
                                     dg::input(b.to(DType::f32)))
                        : dg::linear(dg::input(x.to(DType::f32)), dg::input(w.to(DType::f32)));
      EXPECT_TRUE(dg::allclose(y.value().to(DType::f64), ref.value(), 1e-5, 1e-4))
          << "N " << N << " in " << in << " out " << out << " with bias " << with_bias;
    }
  }
}

TEST(Linalg, HandGradients) {
  dg::Tape tape;
  Var a = dg::variable(f64({1, 2, 3, 4, 5, 6}, {2, 3}));
  Var b = dg::variable(f64({1, 0, 0, 1, 1, 1}, {3, 2}));
  auto g = dg::grad(dg::sum(dg::matmul(a, b)), {a, b});
  // d/da sum(a b) = 1 b^T: row sums of b; d/db = a^T 1: column sums of a.
  EXPECT_TRUE(ValuesNear(g[0], {2, 3}, {1, 1, 2, 1, 1, 2}));
  EXPECT_TRUE(ValuesNear(g[1], {3, 2}, {5, 5, 7, 7, 9, 9}));

  Var x = dg::variable(f64({1, 2}, {1, 2}));
  Var w = dg::variable(f64({3, 4, 5, 6, 7, 8}, {3, 2}));
  Var bias = dg::variable(f64({0, 0, 0}, {3}));
  auto gl =
      dg::grad({dg::linear(x, w, bias)}, {x, w, bias}, {dg::constant(f64({1, 0, -1}, {1, 3}))});
  EXPECT_TRUE(ValuesNear(gl[0], {1, 2}, {3 - 7, 4 - 8}));
  EXPECT_TRUE(ValuesNear(gl[1], {3, 2}, {1, 2, 0, 0, -1, -2}));
  EXPECT_TRUE(ValuesNear(gl[2], {3}, {1, 0, -1}));
}

// ---- gradient checks --------------------------------------------------------------------

TEST(Linalg, MatmulGradientChecks) {
  uint64_t seed = 1200;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const auto& [M, K, N] :
           std::vector<std::tuple<int64_t, int64_t, int64_t>>{{2, 3, 4}, {1, 5, 1}, {3, 1, 2}}) {
        Tensor a = dg::test::rand64(ta ? Shape{K, M} : Shape{M, K}, ++seed);
        Tensor b = dg::test::rand64(tb ? Shape{N, K} : Shape{K, N}, ++seed);
        Fn f = [ta, tb](const Vars& v) {
          return Vars{dg::matmul(v[0], v[1], {.transpose_a = ta, .transpose_b = tb})};
        };
        SCOPED_TRACE(fmt::format("matmul ta={} tb={} M={} K={} N={}", ta, tb, M, K, N));
        expect_gradients_ok(f, {a, b});
      }
  // The same matrix on both sides: a @ a^T.
  Fn gram = [](const Vars& v) { return Vars{dg::matmul(v[0], v[0], {.transpose_b = true})}; };
  {
    SCOPED_TRACE("matmul(a, a^T)");
    expect_gradients_ok(gram, {dg::test::rand64({3, 4}, 1300)});
  }
  // Large enough for the directional mode.
  Fn big = [](const Vars& v) { return Vars{dg::tanh(dg::matmul(v[0], v[1]))}; };
  SCOPED_TRACE("matmul large");
  expect_gradients_ok(big, {dg::test::rand64({20, 30}, 1301, -0.3, 0.3),
                            dg::test::rand64({30, 10}, 1302, -0.3, 0.3)});
}

TEST(Linalg, LinearGradientChecks) {
  uint64_t seed = 1400;
  for (const auto& [N, I, O] :
       std::vector<std::tuple<int64_t, int64_t, int64_t>>{{2, 3, 4}, {1, 1, 1}, {5, 2, 3}}) {
    Tensor x = dg::test::rand64({N, I}, ++seed), w = dg::test::rand64({O, I}, ++seed),
           b = dg::test::rand64({O}, ++seed);
    Fn with_bias = [](const Vars& v) { return Vars{dg::linear(v[0], v[1], v[2])}; };
    Fn without = [](const Vars& v) { return Vars{dg::linear(v[0], v[1])}; };
    Fn mlp = [](const Vars& v) { return Vars{dg::sum(dg::tanh(dg::linear(v[0], v[1], v[2])))}; };
    std::string what = fmt::format("linear N={} in={} out={}", N, I, O);
    {
      SCOPED_TRACE(what + " with bias");
      expect_gradients_ok(with_bias, {x, w, b});
    }
    {
      SCOPED_TRACE(what + " without bias");
      expect_gradients_ok(without, {x, w});
    }
    {
      SCOPED_TRACE(what + " tanh-sum");
      expect_gradients_ok(mlp, {x, w, b});
    }
  }
  // Only some inputs differentiated (a frozen weight).
  dg::CheckOptions o;
  o.wrt = {true, false, true};
  Fn f = [](const Vars& v) { return Vars{dg::linear(v[0], v[1], v[2])}; };
  std::vector<Tensor> inputs{dg::test::rand64({2, 3}, 1500), dg::test::rand64({4, 3}, 1501),
                             dg::test::rand64({4}, 1502)};
  EXPECT_TRUE(dg::test::Passed(dg::gradcheck(f, inputs, o)));
  EXPECT_TRUE(dg::test::Passed(dg::gradgradcheck(f, inputs, o)));
}

// ---- shape-rule errors ------------------------------------------------------------------

TEST(Linalg, MatmulErrors) {
  Var a = dg::input(Tensor::zeros({3, 4}, DType::f64)),
      b = dg::input(Tensor::zeros({5, 2}, DType::f64));
  EXPECT_TRUE(
      ThrowsExactly([&] { (void)dg::matmul(a, b); }, "matmul at ",
                    ": a is [3,4] and b is [5,2]; a's columns (4) must equal b's rows (5)"));
  EXPECT_THROW((void)dg::matmul(a, b), dg::ShapeError);
  EXPECT_TRUE(
      ThrowsExactly([&] { (void)dg::matmul(a, b, {.transpose_a = true}); }, "matmul at ",
                    ": a^T is [4,3] and b is [5,2]; a's columns (3) must equal b's rows (5)"));
  EXPECT_TRUE(
      ThrowsExactly([&] { (void)dg::matmul(a, b, {.transpose_b = true}); }, "matmul at ",
                    ": a is [3,4] and b^T is [2,5]; a's columns (4) must equal b's rows (2)"));
  Var v = dg::input(Tensor::zeros({4}, DType::f64));
  EXPECT_TRUE(ThrowsExactly([&] { (void)dg::matmul(v, b); }, "matmul at ",
                            ": a and b must be 2-D, got a [4] and b [5,2]"));
  Var t3 = dg::input(Tensor::zeros({2, 3, 4}, DType::f64));
  EXPECT_TRUE(ThrowsError([&] { (void)dg::matmul(a, t3); }, {"matmul", "2-D", "[2,3,4]"}));
}

TEST(Linalg, LinearErrors) {
  auto z = [](const Shape& s) { return dg::input(Tensor::zeros(s, DType::f64)); };
  EXPECT_TRUE(ThrowsExactly(
      [&] {
        (void)dg::linear(z({3}), z({2, 3}));
      },
      "linear at ", ": x must be 2-D [N,in], got [3]"));
  EXPECT_TRUE(ThrowsExactly(
      [&] {
        (void)dg::linear(z({2, 3}), z({3}));
      },
      "linear at ", ": w must be 2-D [out,in], got [3]"));
  EXPECT_TRUE(ThrowsExactly(
      [&] {
        (void)dg::linear(z({2, 3}), z({4, 5}));
      },
      "linear at ", ": x is [2,3] and w is [4,5]; x's features (3) must equal w.shape[1] (5)"));
  EXPECT_TRUE(ThrowsExactly(
      [&] {
        (void)dg::linear(z({2, 3}), z({4, 3}), z({3}));
      },
      "linear at ", ": b is [3] but w [4,3] has 4 outputs; b must be [4]"));
  EXPECT_TRUE(ThrowsError(
      [&] {
        (void)dg::linear(z({2, 3}), z({4, 3}), z({1, 4}));
      },
      {"linear", "b is [1,4]"}));
}

// ---- how each op of this family is called through its typed function ---------------------
// (tests/typed_ops_test.cpp compares each with the call by name; an op missing here fails there)

namespace typed_calls_linalg {
using namespace dg;
using Vars = std::vector<dg::Var>;
const bool listed = dg::test::list_typed_calls({
    {"matmul",
     [](const Vars& in, const Attrs& a) {
       return Vars{matmul(
           in[0], in[1],
           {.transpose_a = a.boolean("transpose_a"), .transpose_b = a.boolean("transpose_b")})};
     }},
    {"linear",
     [](const Vars& in, const Attrs&) {
       return test::with_optional_bias(in, [](const Var& x, const Var& w, const Var* b) {
         return b ? linear(x, w, *b) : linear(x, w);
       });
     }},
});
}  // namespace typed_calls_linalg
