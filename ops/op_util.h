// Internal helpers for the op families in ops/: registration, dtype dispatch, the typed-call
// path and the wording of shape errors. Nothing here is public API.
#pragma once

#include <initializer_list>
#include <memory>
#include <span>
#include <string>

#include "deltagraph/core/error.h"
#include "deltagraph/core/forward.h"
#include "deltagraph/core/op.h"
#include "deltagraph/core/tensor.h"
#include "deltagraph/ops/ops.h"

namespace dg {

// Calls f(T{}) with T = float or double for a floating dtype.
template <class F>
decltype(auto) dispatch_float(DType dtype, F&& f) {
  if (dtype == DType::f64) return f(double{});
  return f(float{});
}

// Calls f(T{}) with T = float, double or int64_t: for kernels that only move data (reshape,
// permute, narrow), which work on labels and indices as well as on values.
template <class F>
decltype(auto) dispatch_any(DType dtype, F&& f) {
  if (dtype == DType::i64) return f(int64_t{});
  return dispatch_float(dtype, std::forward<F>(f));
}

// Runs an op from a typed function and returns its first output.
inline Var call_op(const OpDef& op, std::initializer_list<Var> inputs, Attrs attrs, Loc loc) {
  return call_first(op, std::span<const Var>(inputs.begin(), inputs.size()), std::move(attrs), loc);
}
inline Var call_op(const OpDef& op, std::initializer_list<Var> inputs, Loc loc) {
  return call_op(op, inputs, Attrs(op, {}), loc);
}

// Looks an op up once per call site: `static const OpDef& op = builtin("relu");`.
inline const OpDef& builtin(std::string_view name) { return find_op(name); }

// Throws a ShapeError "<op>: <message>".
template <class... Args>
[[noreturn]] void shape_fail(const OpCall& c, fmt::format_string<Args...> format, Args&&... args) {
  throw ShapeError(c.op.name + ": " + fmt::format(format, std::forward<Args>(args)...));
}

// Checks x.dim() is one of the allowed ranks ("x must be 4-D [N,C,H,W], got [2,3]").
inline void expect_rank(const OpCall& c, int input, int rank, const char* layout) {
  const Tensor& t = c.input(input);
  if (t.dim() != rank)
    shape_fail(c, "{} must be {}-D {}, got {}", c.op.input_name(input), rank, layout, t.shape());
}

// Attribute specs reused across op families.
inline AttrSpec pair_attr(std::string name, int64_t default_value, std::string label,
                          std::string doc = "") {
  return {std::move(name), AttrType::pair, AttrValue(Ints{default_value, default_value}),
          std::move(doc), std::move(label)};
}

// The JVP of an op whose Jacobian is diagonal (elementwise, one input): J t = J^T t, the op's
// own VJP applied to the tangent.
inline std::vector<Var> diagonal_jvp(const JvpContext& c) {
  const Var cotangent[1] = {c.tangent(0)};
  const bool needs[1] = {true};
  return {c.op.vjp(VjpContext{c.op, c.attrs, c.inputs, c.outputs, cotangent, needs, c.context})[0]};
}

// The JVP of an op linear in its input 0 (the other inputs fixed: indices, sizes): the op itself
// applied to the tangent, dy = op(t, rest...).
inline std::vector<Var> linear_jvp(const JvpContext& c) {
  std::vector<Var> in(c.inputs.begin(), c.inputs.end());
  in[0] = c.tangent(0);
  return {call_first(c.op, in, c.attrs)};
}

// The JVP of y = op(x, w) + b with op bilinear in (x, w) and the optional bias b [O] added over
// axis 1 (conv2d, conv_transpose2d, conv1x1, linear, matmul):
// dy = op(tx, w) + op(x, tw) + tb.
inline std::vector<Var> bilinear_jvp(const JvpContext& c) {
  Var dy;
  auto apply = [&](const Var& a, const Var& b) {
    const Var in[2] = {a, b};
    const Var term = call_first(c.op, in, c.attrs);
    dy = dy.defined() ? add(dy, term) : term;
  };
  if (c.has_tangent(0)) apply(c.tangent(0), c.input(1));
  if (c.has_tangent(1)) apply(c.input(0), c.tangent(1));
  if (c.has_tangent(2))
    dy = bias_add(dy.defined() ? dy : Var(Tensor::zeros(c.output(0).shape(), c.output(0).dtype())),
                  c.tangent(2));
  return {dy};
}

// The JVP of an op with a one-element output (a loss): J is a row, so J t = sum_i <J_i^T 1, t_i>,
// one VJP with a cotangent of 1. Larger outputs take the transposed VJP.
inline std::vector<Var> scalar_output_jvp(const JvpContext& c) {
  if (c.output(0).numel() != 1)
    return op_jvp(c.op, c.attrs, c.inputs, c.outputs, c.tangents, /*use_rule=*/false, c.context);
  std::vector<Var> cotangents(c.outputs.size());
  cotangents[0] = Var(Tensor::ones(c.output(0).shape(), c.output(0).dtype()));
  std::vector<bool> wanted(c.inputs.size());
  for (size_t i = 0; i < c.inputs.size(); ++i) wanted[i] = c.has_tangent(static_cast<int>(i));
  const std::unique_ptr<bool[]> needs(new bool[c.inputs.size()]);
  for (size_t i = 0; i < c.inputs.size(); ++i) needs[i] = wanted[i];
  const std::vector<Var> g =
      c.op.vjp(VjpContext{c.op, c.attrs, c.inputs, c.outputs, cotangents,
                          std::span<const bool>(needs.get(), c.inputs.size()), c.context});
  Var dy;
  for (size_t i = 0; i < std::min(g.size(), c.inputs.size()); ++i) {
    if (!wanted[i] || !g[i].defined()) continue;
    const Var term = sum(mul(g[i], c.tangent(static_cast<int>(i))));
    dy = dy.defined() ? add(dy, term) : term;
  }
  if (dy.defined()) dy = reshape(dy, c.output(0).shape());
  return {dy};
}

// A padding in messages: "[1,1]" when symmetric (as PyTorch writes it), else
// "[top,bottom,left,right]".
inline std::string padding_text(const Padding& p) {
  return p.symmetric() ? fmt::format("[{},{}]", p.top, p.left) : p.to_string();
}

// A `padding` attribute (AttrType::padding), 0 by default.
inline AttrSpec padding_attr(std::string doc = "") {
  return {"padding", AttrType::padding, AttrValue(Padding(0)), std::move(doc), "p"};
}

}  // namespace dg

namespace dg {

// ---- samplers for the property tests ----------------------------------------------------

// All inputs batched on axis 0 (for ops whose every input carries the batch).
inline std::vector<bool> all_batched(size_t n) { return std::vector<bool>(n, true); }

}  // namespace dg
