// The linear-algebra family: matmul (2-D, optional transposes) and linear (x @ w^T + b).
#include "kernels/gemm.h"
#include "op_util.h"

namespace dg {

namespace {

struct MatDims {
  int64_t rows, cols;
};
MatDims op_dims(const Tensor& t, bool transposed) {
  return transposed ? MatDims{t.shape()[1], t.shape()[0]} : MatDims{t.shape()[0], t.shape()[1]};
}

// ---- matmul -----------------------------------------------------------------------------------

std::vector<TensorSpec> matmul_shape(const OpCall& c) {
  const Tensor &a = c.input(0), &b = c.input(1);
  if (a.dim() != 2 || b.dim() != 2)
    shape_fail(c, "a and b must be 2-D, got a {} and b {}", a.shape(), b.shape());
  const bool ta = c.attrs.boolean("transpose_a"), tb = c.attrs.boolean("transpose_b");
  MatDims da = op_dims(a, ta), db = op_dims(b, tb);
  if (da.cols != db.rows)
    shape_fail(c, "a{} is {} and b{} is {}; a's columns ({}) must equal b's rows ({})",
               ta ? "^T" : "", Shape{da.rows, da.cols}, tb ? "^T" : "", Shape{db.rows, db.cols},
               da.cols, db.rows);
  return std::vector<TensorSpec>{{{da.rows, db.cols}, a.dtype()}};
}

std::vector<Tensor> matmul_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor &a = c.input(0), &b = c.input(1);
  const bool ta = c.attrs.boolean("transpose_a"), tb = c.attrs.boolean("transpose_b");
  Tensor y(specs[0].shape, specs[0].dtype);
  const int64_t M = y.shape()[0], N = y.shape()[1], K = op_dims(a, ta).cols;
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    kernels::gemm<T>(ta, tb, M, N, K, T(1), a.data<T>(), a.shape()[1], b.data<T>(), b.shape()[1],
                     T(0), y.data<T>(), N);
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> matmul_vjp(const VjpContext& c) {
  const Var &a = c.input(0), &b = c.input(1), &g = c.grad_output(0);
  const bool ta = c.attrs.boolean("transpose_a"), tb = c.attrs.boolean("transpose_b");
  Var da, db;
  if (c.needs(0))
    da = ta ? matmul(b, g, {.transpose_a = tb, .transpose_b = true})
            : matmul(g, b, {.transpose_a = false, .transpose_b = !tb});
  if (c.needs(1))
    db = tb ? matmul(g, a, {.transpose_a = true, .transpose_b = ta})
            : matmul(a, g, {.transpose_a = !ta, .transpose_b = false});
  return {da, db};
}

OpSample matmul_sample(Sampler& s) {
  const int64_t M = s.integer(1, 4), N = s.integer(1, 4), K = s.integer(1, 4);
  const bool ta = s.boolean(), tb = s.boolean();
  return OpSample{
      {s.smooth(ta ? Shape{K, M} : Shape{M, K}), s.smooth(tb ? Shape{N, K} : Shape{K, N})},
      {{"transpose_a", ta}, {"transpose_b", tb}}};
}

OpDef matmul_def() {
  return {
      .name = "matmul",
      .summary = "y = op(a) @ op(b) for 2-D a, b; op transposes when asked",
      .inputs = {{"a"}, {"b"}},
      .attrs = {{"transpose_a", AttrType::boolean, AttrValue(false), "use a^T", "aT"},
                {"transpose_b", AttrType::boolean, AttrValue(false), "use b^T", "bT"}},
      .shape = matmul_shape,
      .forward = matmul_kernel,
      .vjp = matmul_vjp,
      .vjp_formula = "da = g @ op(b)^T, db = op(a)^T @ g (as matmuls with transpose flags)",
      .vjp_reads_outputs = false,
      .sample = matmul_sample,
  };
}

// ---- linear -----------------------------------------------------------------------------------

std::vector<TensorSpec> linear_shape(const OpCall& c) {
  const Tensor &x = c.input(0), &w = c.input(1);
  if (x.dim() != 2) shape_fail(c, "x must be 2-D [N,in], got {}", x.shape());
  if (w.dim() != 2) shape_fail(c, "w must be 2-D [out,in], got {}", w.shape());
  if (x.shape()[1] != w.shape()[1])
    shape_fail(c, "x is {} and w is {}; x's features ({}) must equal w.shape[1] ({})", x.shape(),
               w.shape(), x.shape()[1], w.shape()[1]);
  if (c.has_input(2) && !(c.input(2).shape() == Shape{w.shape()[0]}))
    shape_fail(c, "b is {} but w {} has {} outputs; b must be [{}]", c.input(2).shape(), w.shape(),
               w.shape()[0], w.shape()[0]);
  return std::vector<TensorSpec>{{{x.shape()[0], w.shape()[0]}, x.dtype()}};
}

std::vector<Tensor> linear_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor &x = c.input(0), &w = c.input(1);
  Tensor y(specs[0].shape, specs[0].dtype);
  const int64_t N = x.shape()[0], out = w.shape()[0], in = w.shape()[1];
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    T* py = y.data<T>();
    T beta = T(0);
    if (c.has_input(2)) {  // start from the bias, then add x @ w^T
      const T* pb = c.input(2).data<T>();
      for (int64_t n = 0; n < N; ++n) std::copy(pb, pb + out, py + n * out);
      beta = T(1);
    }
    kernels::gemm<T>(false, true, N, out, in, T(1), x.data<T>(), in, w.data<T>(), in, beta, py,
                     out);
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> linear_vjp(const VjpContext& c) {
  const Var& g = c.grad_output(0);
  Var dx, dw, db;
  if (c.needs(0)) dx = matmul(g, c.input(1));
  if (c.needs(1)) dw = matmul(g, c.input(0), {.transpose_a = true});
  if (!c.has_input(2)) return {dx, dw};  // one gradient per given input
  if (c.needs(2)) db = sum(g, {.axes = {0}});
  return {dx, dw, db};
}

OpSample linear_sample(Sampler& s) {
  const int64_t N = s.integer(1, 4), in = s.integer(1, 5), out = s.integer(1, 4);
  OpSample sample{{s.smooth({N, in}), s.smooth({out, in})}, {}, {true, false}};
  if (s.boolean()) {
    sample.inputs.push_back(s.smooth({out}));
    sample.batched.push_back(false);
  }
  return sample;
}

OpDef linear_def() {
  return {
      .name = "linear",
      .summary = "y = x @ w^T + b, x [N,in], w [out,in], b [out]",
      .inputs = {{"x"}, {"w"}, {"b", InputKind::floating, true}},
      .shape = linear_shape,
      .forward = linear_kernel,
      .vjp = linear_vjp,
      .vjp_formula = "dx = g @ w, dw = g^T @ x, db = sum_n g",
      .vjp_reads_outputs = false,
      .sample = linear_sample,
  };
}

}  // namespace

void register_linalg_ops() {
  register_builtin(matmul_def());
  register_builtin(linear_def());
}

Var matmul(const Var& a, const Var& b, MatmulOptions o, Loc loc) {
  static const OpDef& op = builtin("matmul");
  return call_op(op, {a, b},
                 Attrs(op, {{"transpose_a", o.transpose_a}, {"transpose_b", o.transpose_b}}), loc);
}
Var linear(const Var& x, const Var& w, Loc loc) {
  static const OpDef& op = builtin("linear");
  return call_op(op, {x, w}, loc);
}
Var linear(const Var& x, const Var& w, const Var& b, Loc loc) {
  static const OpDef& op = builtin("linear");
  return call_op(op, {x, w, b}, loc);
}

}  // namespace dg
