// Internal helpers for the op families in ops/: registration, dtype dispatch, the typed-call
// path and the wording of shape errors. Nothing here is public API.
#pragma once

#include <initializer_list>
#include <span>
#include <string>

#include "deltagraph/core/error.h"
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
