// bias_add: a per-channel bias over axis 1 of [N,C] or [N,C,H,W] (any rank >= 2).
#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {
// ---- bias_add ---------------------------------------------------------------------------------

std::vector<TensorSpec> bias_add_shape(const OpCall& c) {
  const Shape &x = c.input(0).shape(), &b = c.input(1).shape();
  if (x.size() < 2) shape_fail(c, "x must be [N,C] or [N,C,H,W], got {}", x);
  if (!(b == Shape{x[1]}))
    shape_fail(c, "b is {} but x {} has {} channels (axis 1); b must be [{}]", b, x, x[1], x[1]);
  return same_as_input(c);
}

std::vector<Tensor> bias_add_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor &x = c.input(0), &b = c.input(1);
  Tensor y(specs[0].shape, specs[0].dtype);
  const int64_t C = x.shape()[1], planes = x.shape()[0] * C,
                inner = x.numel() / std::max<int64_t>(planes, 1);
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    const T *px = x.data<T>(), *pb = b.data<T>();
    T* py = y.data<T>();
    kernels::parallel_for(planes, inner, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const T bias = pb[p % C];
        for (int64_t i = p * inner; i < (p + 1) * inner; ++i) py[i] = px[i] + bias;
      }
    });
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> bias_add_vjp(const VjpContext& c) {
  const Var& g = c.grad_output(0);
  Var db;
  if (c.needs(1)) {
    Ints axes{0};
    for (int d = 2; d < g.dim(); ++d) axes.push_back(d);
    db = sum(g, {.axes = axes});
  }
  return {g, db};
}

// bias_add is linear in (x, b) together: dy = bias_add(tx, tb), a missing tangent being zero.
std::vector<Var> bias_add_jvp(const JvpContext& c) {
  if (!c.has_tangent(1)) return {c.tangent(0)};
  const Var tx = c.has_tangent(0) ? c.tangent(0)
                                  : Var(Tensor::zeros(c.output(0).shape(), c.output(0).dtype()));
  return {bias_add(tx, c.tangent(1))};
}

OpSample bias_add_sample(Sampler& s) {
  Shape shape = sample_shape(s, 2, 4);
  return OpSample{{s.smooth(shape), s.smooth({shape[1]})}, {}, {true, false}};
}

OpDef bias_add_def() {
  return {
      .name = "bias_add",
      .summary = "y = x + b over axis 1: x [N,C] or [N,C,H,W], b [C]",
      .inputs = {{"x"}, {"b"}},
      .shape = bias_add_shape,
      .forward = bias_add_kernel,
      .vjp = bias_add_vjp,
      .vjp_formula = "dx = g, db = sum of g over every axis but 1",
      .vjp_reads_outputs = false,
      .jvp = bias_add_jvp,
      .jvp_formula = "dy = tx + tb over axis 1",
      .sample = bias_add_sample,
  };
}

}  // namespace

void register_bias_ops() { register_builtin(bias_add_def()); }

Var bias_add(const Var& x, const Var& b, Loc loc) {
  static const OpDef& op = builtin("bias_add");
  return call_op(op, {x, b}, loc);
}

}  // namespace dg
