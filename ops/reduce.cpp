// The reduction family: sum and mean (over all axes or given ones), the pair that moves between
// a shape and its broadcast: broadcast_to and sum_to (each is the other's VJP), and argmax.
#include <algorithm>
#include <cmath>
#include <mutex>
#include <type_traits>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {

// Sums x over the axes where `reduce[d]` is true; the result keeps those axes with size 1.
// Adjacent axes of the same kind are merged first, so the inner loop runs over the longest
// contiguous stretch. Accumulates in double.
template <class T>
Tensor reduce_sum(const Tensor& x, const std::vector<bool>& reduce) {
  Shape kept = x.shape();
  for (int d = 0; d < kept.size(); ++d)
    if (reduce[d]) kept[d] = 1;
  Tensor y(kept, x.dtype());
  const int64_t n = x.numel();
  const T* px = x.data<T>();
  std::vector<double> acc(static_cast<size_t>(y.numel()), 0.0);
  if (n == 0) {
    std::fill_n(y.data<T>(), y.numel(), T(0));
    return y;
  }
  // Canonical dims: (size, reduced) runs.
  std::vector<std::pair<int64_t, bool>> dims;
  for (int d = 0; d < x.dim(); ++d) {
    if (x.shape()[d] == 1) continue;
    if (!dims.empty() && dims.back().second == reduce[d])
      dims.back().first *= x.shape()[d];
    else
      dims.emplace_back(x.shape()[d], reduce[d]);
  }
  if (dims.empty()) dims.emplace_back(1, false);
  // Output strides of the canonical dims (0 for reduced ones).
  std::vector<int64_t> out_stride(dims.size(), 0);
  int64_t s = 1;
  for (int d = static_cast<int>(dims.size()) - 1; d >= 0; --d)
    if (!dims[d].second) {
      out_stride[d] = s;
      s *= dims[d].first;
    }
  const int64_t inner = dims.back().first;
  const bool inner_reduced = dims.back().second;
  const int64_t rows = n / inner;
  // Rows are split over the threads, each summing into its own accumulator (combined below);
  // worth it only when the output is small next to the input, as in a bias gradient.
  const int64_t out_n = y.numel();
  std::vector<std::pair<int64_t, std::vector<double>>> partials;  // (first row, sums)
  std::mutex partials_mutex;
  kernels::parallel_for(rows, out_n * 16 <= n ? inner : 0, [&](int64_t r0, int64_t r1) {
    std::vector<double> local(static_cast<size_t>(out_n), 0.0);
    for (int64_t r = r0; r < r1; ++r) {
      int64_t offset = 0, rest = r;
      for (int d = static_cast<int>(dims.size()) - 2; d >= 0; --d) {
        offset += (rest % dims[d].first) * out_stride[d];
        rest /= dims[d].first;
      }
      const T* row = px + r * inner;
      if (inner_reduced) {
        double sum = 0;
        // Reassociating the sum lets it vectorise; in double, the order costs no accuracy a
        // float32 result could show.
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < inner; ++i) sum += row[i];
        local[offset] += sum;
      } else {
        double* out = local.data() + offset;
        for (int64_t i = 0; i < inner; ++i) out[i] += row[i];
      }
    }
    std::lock_guard lock(partials_mutex);
    partials.emplace_back(r0, std::move(local));
  });
  // Combined in row order, so the result does not depend on which thread finished first.
  std::sort(partials.begin(), partials.end());
  for (const auto& [first_row, part] : partials)
    for (int64_t i = 0; i < out_n; ++i) acc[i] += part[i];
  T* py = y.data<T>();
  for (int64_t i = 0; i < y.numel(); ++i) py[i] = static_cast<T>(acc[i]);
  return y;
}

Tensor reduce_sum(const Tensor& x, const std::vector<bool>& reduce) {
  return dispatch_float(x.dtype(), [&](auto t) { return reduce_sum<decltype(t)>(x, reduce); });
}

// Which axes a sum/mean reduces, from its attributes; checks them against the input.
std::vector<bool> reduced_axes(const OpCall& c) {
  const int rank = c.input(0).dim();
  const Ints& axes = c.attrs.ints("axes");
  std::vector<bool> reduce(rank, axes.empty());
  for (int64_t a : axes) {
    int64_t d = a < 0 ? a + rank : a;
    if (d < 0 || d >= rank)
      shape_fail(c, "axis {} is out of range for x of shape {} (rank {})", a, c.input(0).shape(),
                 rank);
    if (reduce[d]) shape_fail(c, "axis {} is listed twice in axes {}", a, axes);
    reduce[d] = true;
  }
  return reduce;
}

Shape reduced_shape(const Shape& in, const std::vector<bool>& reduce, bool keepdims) {
  Shape out;
  for (int d = 0; d < in.size(); ++d) {
    if (!reduce[d])
      out.push_back(in[d]);
    else if (keepdims)
      out.push_back(1);
  }
  return out;
}

std::vector<TensorSpec> reduce_shape(const OpCall& c) {
  auto reduce = reduced_axes(c);
  return {
      {reduced_shape(c.input(0).shape(), reduce, c.attrs.boolean("keepdims")), c.input(0).dtype()}};
}

// The VJP of a reduction: g put back in the kept-dims shape, broadcast over the reduced axes.
Var spread(const VjpContext& c, double scale) {
  const Var& x = c.input(0);
  const Ints& axes = c.attrs.ints("axes");
  Shape kept = x.shape();
  for (int d = 0; d < kept.size(); ++d) {
    bool reduced = axes.empty() || std::find_if(axes.begin(), axes.end(), [&](int64_t a) {
                                     return (a < 0 ? a + kept.size() : a) == d;
                                   }) != axes.end();
    if (reduced) kept[d] = 1;
  }
  Var g = broadcast_to(reshape(c.grad_output(0), kept), x.shape());
  return scale == 1.0 ? g : mul_scalar(g, scale);
}

int64_t reduced_count(const Shape& in, const Shape& out) {
  return out.product() == 0 ? 0 : in.product() / out.product();
}

bool broadcastable(const Shape& from, const Shape& to) {
  if (from.size() > to.size()) return false;
  for (int i = from.size() - 1, j = to.size() - 1; i >= 0; --i, --j)
    if (from[i] != to[j] && from[i] != 1) return false;
  return true;
}

// x of rank 1 to 4 and a random subset of its axes (some written negative), keepdims or not.
OpSample sample_reduction(Sampler& s) {
  const Shape shape = sample_shape(s, 1, 4);
  Ints axes;
  for (int d = 0; d < shape.size(); ++d)
    if (s.boolean()) axes.push_back(s.boolean() ? d : d - shape.size());
  return OpSample{{s.smooth(shape)}, {{"axes", axes}, {"keepdims", s.boolean()}}};
}

std::vector<AttrSpec> reduce_attrs() {
  return {{"axes", AttrType::ints, AttrValue(Ints{}), "axes to reduce; empty: all"},
          {"keepdims", AttrType::boolean, AttrValue(false), "keep reduced axes with size 1"}};
}

// ---- sum --------------------------------------------------------------------------------------

std::vector<Tensor> sum_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  return std::vector<Tensor>{reduce_sum(c.input(0), reduced_axes(c)).reshape(specs[0].shape)};
}

std::vector<Var> sum_vjp(const VjpContext& c) { return {spread(c, 1.0)}; }

OpDef sum_def() {
  return {
      .name = "sum",
      .summary = "sum over all elements, or over the given axes",
      .inputs = {{"x"}},
      .attrs = reduce_attrs(),
      .shape = reduce_shape,
      .forward = sum_kernel,
      .vjp = sum_vjp,
      .vjp_formula = "dx = broadcast_to(g, x.shape)",
      .vjp_reads_outputs = false,
      .sample = sample_reduction,
  };
}

// ---- mean -------------------------------------------------------------------------------------

std::vector<Tensor> mean_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor y = reduce_sum(c.input(0), reduced_axes(c)).reshape(specs[0].shape);
  const int64_t count = reduced_count(c.input(0).shape(), y.shape());
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    for (T& v : y.values<T>()) v = count ? v / static_cast<T>(count) : T(NAN);
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> mean_vjp(const VjpContext& c) {
  const int64_t count = reduced_count(c.input(0).shape(), c.output(0).shape());
  return {spread(c, count ? 1.0 / static_cast<double>(count) : 0.0)};
}

OpDef mean_def() {
  return {
      .name = "mean",
      .summary = "mean over all elements, or over the given axes",
      .inputs = {{"x"}},
      .attrs = reduce_attrs(),
      .shape = reduce_shape,
      .forward = mean_kernel,
      .vjp = mean_vjp,
      .vjp_formula = "dx = broadcast_to(g, x.shape) / count",
      .vjp_reads_outputs = false,
      .sample = sample_reduction,
  };
}

// ---- broadcast_to -----------------------------------------------------------------------------

std::vector<TensorSpec> broadcast_to_shape(const OpCall& c) {
  const Shape target(c.attrs.ints("shape"));
  if (!broadcastable(c.input(0).shape(), target))
    shape_fail(c,
               "x of shape {} cannot be broadcast to {} (aligned at the right, each "
               "axis must match or be 1)",
               c.input(0).shape(), target);
  return std::vector<TensorSpec>{{target, c.input(0).dtype()}};
}

std::vector<Tensor> broadcast_to_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor y(specs[0].shape, specs[0].dtype);
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    // y = x + 0, through the broadcasting zip with a zero scalar.
    Tensor zero = Tensor::zeros({}, y.dtype());
    kernels::zip<T>(c.input(0), zero, y, [](T a, T) { return a; });
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> broadcast_to_vjp(const VjpContext& c) {
  return {sum_to(c.grad_output(0), c.input(0).shape())};
}

OpSample broadcast_to_sample(Sampler& s) {
  const Shape full = sample_shape(s, 0, 4);
  return OpSample{{s.smooth(sample_broadcastable(s, full))}, {{"shape", Ints(full)}}};
}

OpDef broadcast_to_def() {
  return {
      .name = "broadcast_to",
      .summary = "repeats x along axes of size 1 (numpy broadcasting) to the given shape",
      .inputs = {{"x"}},
      .attrs = {{"shape", AttrType::ints, std::nullopt, "the target shape"}},
      .shape = broadcast_to_shape,
      .forward = broadcast_to_kernel,
      .vjp = broadcast_to_vjp,
      .vjp_formula = "dx = sum_to(g, x.shape)",
      .vjp_reads_outputs = false,
      .sample = broadcast_to_sample,
  };
}

// ---- sum_to -----------------------------------------------------------------------------------

std::vector<TensorSpec> sum_to_shape(const OpCall& c) {
  const Shape target(c.attrs.ints("shape"));
  if (!broadcastable(target, c.input(0).shape()))
    shape_fail(c, "x of shape {} cannot be summed to {}: {} does not broadcast to {}",
               c.input(0).shape(), target, target, c.input(0).shape());
  return std::vector<TensorSpec>{{target, c.input(0).dtype()}};
}

std::vector<Tensor> sum_to_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Shape& in = c.input(0).shape();
  const Shape& target = specs[0].shape;
  std::vector<bool> reduce(in.size());
  const int lead = in.size() - target.size();
  for (int d = 0; d < in.size(); ++d) reduce[d] = d < lead || (target[d - lead] == 1 && in[d] != 1);
  return std::vector<Tensor>{reduce_sum(c.input(0), reduce).reshape(target)};
}

std::vector<Var> sum_to_vjp(const VjpContext& c) {
  return {broadcast_to(c.grad_output(0), c.input(0).shape())};
}

OpSample sum_to_sample(Sampler& s) {
  const Shape full = sample_shape(s, 0, 4);
  return OpSample{{s.smooth(full)}, {{"shape", Ints(sample_broadcastable(s, full))}}};
}

OpDef sum_to_def() {
  return {
      .name = "sum_to",
      .summary = "sums x down to a shape it broadcasts from (the adjoint of broadcast_to)",
      .inputs = {{"x"}},
      .attrs = {{"shape", AttrType::ints, std::nullopt, "the target shape"}},
      .shape = sum_to_shape,
      .forward = sum_to_kernel,
      .vjp = sum_to_vjp,
      .vjp_formula = "dx = broadcast_to(g, x.shape)",
      .vjp_reads_outputs = false,
      .sample = sum_to_sample,
  };
}

}  // namespace

// ---- argmax -----------------------------------------------------------------------------------
// The index of the largest value along one axis (torch.argmax): the first maximum wins a tie,
// and NaN counts as larger than any number (the first NaN wins), as in PyTorch.

int64_t argmax_axis(const OpCall& c) {
  const Tensor& x = c.input(0);
  const int64_t axis = c.attrs.integer("axis"), rank = x.dim();
  if (rank < 1) shape_fail(c, "x must have at least one axis, got a scalar");
  const int64_t d = axis < 0 ? axis + rank : axis;
  if (d < 0 || d >= rank)
    shape_fail(c, "axis {} is out of range for x of shape {} (rank {})", axis, x.shape(), rank);
  if (x.shape()[d] == 0)
    shape_fail(c, "axis {} of x {} is empty: there is no largest element", axis, x.shape());
  return d;
}

std::vector<TensorSpec> argmax_shape(const OpCall& c) {
  const int64_t d = argmax_axis(c);
  std::vector<bool> reduce(c.input(0).dim(), false);
  reduce[d] = true;
  return {{reduced_shape(c.input(0).shape(), reduce, c.attrs.boolean("keepdims")), DType::i64}};
}

template <class T>
void argmax_kernel_typed(const T* x, int64_t outer, int64_t n, int64_t inner, int64_t* out) {
  kernels::parallel_for(outer * inner, n, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const T* row = x + (k / inner) * n * inner + k % inner;
      int64_t best = 0;
      for (int64_t j = 1; j < n; ++j) {
        const T v = row[j * inner], b = row[best * inner];
        if constexpr (std::is_floating_point_v<T>) {
          if (std::isnan(b)) break;  // a NaN is the maximum, and the first one wins
          if (std::isnan(v) || v > b) best = j;
        } else if (v > b) {
          best = j;
        }
      }
      out[k] = best;
    }
  });
}

std::vector<Tensor> argmax_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor& x = c.input(0);
  const int64_t d = argmax_axis(c);
  int64_t outer = 1, inner = 1;
  for (int a = 0; a < d; ++a) outer *= x.shape()[a];
  for (int a = d + 1; a < x.dim(); ++a) inner *= x.shape()[a];
  const int64_t n = x.shape()[d];
  Tensor y(specs[0].shape, DType::i64);
  int64_t* out = y.data<int64_t>();
  if (x.dtype() == DType::i64)
    argmax_kernel_typed(x.data<int64_t>(), outer, n, inner, out);
  else
    dispatch_float(x.dtype(), [&](auto t) {
      argmax_kernel_typed(x.data<decltype(t)>(), outer, n, inner, out);
    });
  return std::vector<Tensor>{y};
}

// Distinct values (no ties) over a random axis, written negative half of the time. The op on a
// batch is the op on each sample unless it searches the batch axis itself, so the draws start
// (and shrink) at axis 1 and reach axis 0 last.
OpSample argmax_sample(Sampler& s) {
  const Shape shape = sample_shape(s, 2, 4);
  const int64_t rank = shape.size(), d = (s.integer(0, rank - 1) + 1) % rank;
  const int64_t axis = s.boolean() ? d : d - rank;
  return OpSample{{s.distinct(shape)},
                  {{"axis", axis}, {"keepdims", s.boolean()}},
                  d != 0 ? all_batched(1) : std::vector<bool>{}};
}

OpDef argmax_def() {
  return {
      .name = "argmax",
      .summary = "int64 index of the largest value along an axis (first maximum wins ties)",
      .inputs = {{"x", InputKind::float_or_int64}},
      .outputs = {{"indices", false}},
      .attrs = {{"axis", AttrType::integer, AttrValue(int64_t{1}),
                 "the axis searched; negative counts from the end", "axis="},
                {"keepdims", AttrType::boolean, AttrValue(false), "keep the axis with size 1"}},
      .shape = argmax_shape,
      .forward = argmax_kernel,
      .sample = argmax_sample,
  };
}

void register_reduce_ops() {
  register_builtin(argmax_def());
  register_builtin(sum_def());
  register_builtin(mean_def());
  register_builtin(broadcast_to_def());
  register_builtin(sum_to_def());
}

Var sum(const Var& x, ReduceOptions o, Loc loc) {
  static const OpDef& op = builtin("sum");
  return call_op(op, {x}, Attrs(op, {{"axes", o.axes}, {"keepdims", o.keepdims}}), loc);
}
Var mean(const Var& x, ReduceOptions o, Loc loc) {
  static const OpDef& op = builtin("mean");
  return call_op(op, {x}, Attrs(op, {{"axes", o.axes}, {"keepdims", o.keepdims}}), loc);
}
Var broadcast_to(const Var& x, const Shape& shape, Loc loc) {
  static const OpDef& op = builtin("broadcast_to");
  if (x.defined() && x.shape() == shape) return x;  // nothing to broadcast
  return call_op(op, {x}, Attrs(op, {{"shape", shape}}), loc);
}
Var sum_to(const Var& x, const Shape& shape, Loc loc) {
  static const OpDef& op = builtin("sum_to");
  if (x.defined() && x.shape() == shape) return x;  // nothing to sum
  return call_op(op, {x}, Attrs(op, {{"shape", shape}}), loc);
}

Var argmax(const Var& x, ArgmaxOptions o, Loc loc) {
  static const OpDef& op = builtin("argmax");
  return call_op(op, {x}, Attrs(op, {{"axis", o.axis}, {"keepdims", o.keepdims}}), loc);
}

}  // namespace dg
