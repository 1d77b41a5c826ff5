// The shape family: cat, reshape, flatten, permute, narrow and narrow_backward (zero-padding
// back). Those that only move data accept int64 tensors too (class labels, indices).
#include <cstring>

#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {

int normalize_axis(const OpCall& c, int64_t axis, int rank, const char* arg) {
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    shape_fail(c, "{} {} is out of range for {} of rank {}", arg, axis, c.input(0).shape(), rank);
  return static_cast<int>(a);
}

// Copies `x` into `y` where y's axis `axis` is a window [start, start+len) of x's (narrow), or
// x's axis is a window of y's (the zero-padding narrow_backward does): `outer` rows of
// `x_span`/`y_span` elements each, the window being `len*inner` elements at `start*inner`.
template <class T>
void copy_window(const T* src, int64_t src_span, T* dst, int64_t dst_span, int64_t outer,
                 int64_t src_offset, int64_t dst_offset, int64_t count) {
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(dst + o * dst_span + dst_offset, src + o * src_span + src_offset,
                count * sizeof(T));
}

int64_t resolved_axis_of(int64_t axis, int rank) { return axis < 0 ? axis + rank : axis; }

// The axis attribute of narrow / narrow_backward / cat, resolved against the input's rank.
int64_t resolved_axis(const VjpContext& c) {
  return resolved_axis_of(c.attrs.integer("axis"), c.input(0).dim());
}

struct Window {
  int64_t outer, inner;
};
Window window_of(const Shape& s, int axis) {
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (int d = axis + 1; d < s.size(); ++d) inner *= s[d];
  return {outer, inner};
}

std::vector<Tensor> narrow_like(const OpCall& c, const TensorSpec& spec, bool pad) {
  const Tensor& x = c.input(0);
  int axis = static_cast<int>(c.attrs.integer("axis"));
  if (axis < 0) axis += x.dim();
  const int64_t start = c.attrs.integer("start");
  Tensor y = pad ? Tensor::zeros(spec.shape, spec.dtype) : Tensor(spec.shape, spec.dtype);
  const Window window = window_of(x.shape(), axis);
  const int64_t outer = window.outer, inner = window.inner;
  const int64_t x_span = x.shape()[axis] * inner, y_span = spec.shape[axis] * inner;
  dispatch_any(x.dtype(), [&](auto t) {
    using T = decltype(t);
    // Rows split across threads: cat's VJP narrows large gradients.
    kernels::parallel_for(outer, std::min(x_span, y_span), [&](int64_t r0, int64_t r1) {
      const T* src = x.data<T>() + r0 * x_span;
      T* dst = y.data<T>() + r0 * y_span;
      if (pad)
        copy_window(src, x_span, dst, y_span, r1 - r0, 0, start * inner, x_span);
      else
        copy_window(src, x_span, dst, y_span, r1 - r0, start * inner, 0, y_span);
    });
  });
  return {y};
}

// ---- reshape ----------------------------------------------------------------------------------

std::vector<TensorSpec> reshape_shape(const OpCall& c) {
  Shape target(c.attrs.ints("shape"));
  return std::vector<TensorSpec>{
      {infer_reshape(target, c.input(0).numel(), "reshape"), c.input(0).dtype()}};
}

std::vector<Tensor> reshape_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  return std::vector<Tensor>{c.input(0).reshape(specs[0].shape)};
}

std::vector<Var> reshape_vjp(const VjpContext& c) {
  return {reshape(c.grad_output(0), c.input(0).shape())};
}

OpSample reshape_sample(Sampler& s) {
  const Shape shape = sample_shape(s, 1, 4);
  Ints target = s.boolean() ? Ints{-1} : Ints{shape.back(), -1};
  return OpSample{{s.smooth(shape)}, {{"shape", target}}};
}

OpDef reshape_def() {
  return {
      .name = "reshape",
      .summary = "same data in row-major order, new shape (one entry may be -1)",
      .inputs = {{"x", InputKind::float_or_int64}},
      .attrs = {{"shape", AttrType::ints, std::nullopt, "the target shape; one entry may be -1"}},
      .shape = reshape_shape,
      .forward = reshape_kernel,
      .vjp = reshape_vjp,
      .vjp_formula = "dx = reshape(g, x.shape)",
      .vjp_reads_outputs = false,
      .sample = reshape_sample,
  };
}

// ---- flatten ----------------------------------------------------------------------------------

std::vector<TensorSpec> flatten_shape(const OpCall& c) {
  const Tensor& x = c.input(0);
  if (x.dim() < 2) shape_fail(c, "x must have at least 2 axes [N, ...], got {}", x.shape());
  int64_t features = 1;  // not numel / N, which loses the sizes when N is 0
  for (int d = 1; d < x.dim(); ++d) features *= x.shape()[d];
  return std::vector<TensorSpec>{{{x.shape()[0], features}, x.dtype()}};
}

std::vector<Tensor> flatten_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  return std::vector<Tensor>{c.input(0).reshape(specs[0].shape)};
}

std::vector<Var> flatten_vjp(const VjpContext& c) {
  return {reshape(c.grad_output(0), c.input(0).shape())};
}

OpSample flatten_sample(Sampler& s) {
  return OpSample{{s.smooth(sample_shape(s, 2, 4))}, {}, all_batched(1)};
}

OpDef flatten_def() {
  return {
      .name = "flatten",
      .summary = "[N, d1, d2, ...] -> [N, d1*d2*...]",
      .inputs = {{"x", InputKind::float_or_int64}},
      .shape = flatten_shape,
      .forward = flatten_kernel,
      .vjp = flatten_vjp,
      .vjp_formula = "dx = reshape(g, x.shape)",
      .vjp_reads_outputs = false,
      .sample = flatten_sample,
  };
}

// ---- permute ----------------------------------------------------------------------------------

std::vector<TensorSpec> permute_shape(const OpCall& c) {
  const Shape& in = c.input(0).shape();
  const Ints& dims = c.attrs.ints("dims");
  if (dims.size() != in.size())
    shape_fail(c, "dims {} must list each of the {} axes of x {} once", dims, in.size(), in);
  Shape out;
  std::vector<bool> seen(in.size());
  for (int64_t d : dims) {
    if (d < 0 || d >= in.size() || seen[d])
      shape_fail(c, "dims {} is not a permutation of 0..{} (x is {})", dims, in.size() - 1, in);
    seen[d] = true;
    out.push_back(in[d]);
  }
  return std::vector<TensorSpec>{{out, c.input(0).dtype()}};
}

std::vector<Tensor> permute_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor& x = c.input(0);
  const Ints& dims = c.attrs.ints("dims");
  Tensor y(specs[0].shape, specs[0].dtype);
  const int rank = x.dim();
  // Strides of x, taken in y's axis order.
  Shape x_strides;
  x_strides.resize(rank);
  int64_t s = 1;
  for (int d = rank - 1; d >= 0; --d) {
    x_strides[d] = s;
    s *= x.shape()[d];
  }
  Shape src;
  src.resize(rank);
  for (int i = 0; i < rank; ++i) src[i] = x_strides[static_cast<int>(dims[i])];
  const Shape& out = y.shape();
  dispatch_any(x.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    if (rank == 0) {
      py[0] = px[0];
      return;
    }
    const int64_t inner = out.back(), rows = rank ? y.numel() / std::max<int64_t>(inner, 1) : 1;
    const int64_t step = src.back();
    for (int64_t r = 0; r < rows; ++r) {
      int64_t offset = 0, rest = r;
      for (int d = rank - 2; d >= 0; --d) {
        offset += (rest % out[d]) * src[d];
        rest /= out[d];
      }
      for (int64_t i = 0; i < inner; ++i) py[r * inner + i] = px[offset + i * step];
    }
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> permute_vjp(const VjpContext& c) {
  const Ints& dims = c.attrs.ints("dims");
  Ints inverse;
  inverse.resize(dims.size());
  for (int i = 0; i < dims.size(); ++i) inverse[static_cast<int>(dims[i])] = i;
  return {permute(c.grad_output(0), inverse)};
}

OpSample permute_sample(Sampler& s) {
  const Shape shape = sample_shape(s, 1, 4);
  Ints dims;
  for (int d = 0; d < shape.size(); ++d) dims.push_back(d);
  for (int d = shape.size() - 1; d > 0; --d)
    std::swap(dims[d], dims[static_cast<int>(s.integer(0, d))]);
  return OpSample{{s.smooth(shape)}, {{"dims", dims}}};
}

OpDef permute_def() {
  return {
      .name = "permute",
      .summary = "reorders axes: y.shape[i] = x.shape[dims[i]]",
      .inputs = {{"x", InputKind::float_or_int64}},
      .attrs = {{"dims", AttrType::ints, std::nullopt, "a permutation of 0..rank-1"}},
      .shape = permute_shape,
      .forward = permute_kernel,
      .vjp = permute_vjp,
      .vjp_formula = "dx = permute(g, inverse(dims))",
      .vjp_reads_outputs = false,
      .sample = permute_sample,
  };
}

// ---- narrow -----------------------------------------------------------------------------------

std::vector<TensorSpec> narrow_shape(const OpCall& c) {
  const Shape& in = c.input(0).shape();
  const int axis = normalize_axis(c, c.attrs.integer("axis"), in.size(), "axis");
  const int64_t start = c.attrs.integer("start"), length = c.attrs.integer("length");
  if (start < 0 || length < 0 || start + length > in[axis])
    shape_fail(c, "the window start {} length {} does not fit axis {} of size {} (x is {})", start,
               length, axis, in[axis], in);
  Shape out = in;
  out[axis] = length;
  return std::vector<TensorSpec>{{out, c.input(0).dtype()}};
}

std::vector<Tensor> narrow_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  return narrow_like(c, specs[0], /*pad=*/false);
}

std::vector<Var> narrow_vjp(const VjpContext& c) {
  const int64_t axis = resolved_axis(c);
  return {narrow_backward(c.grad_output(0), axis, c.attrs.integer("start"),
                          c.input(0).size(static_cast<int>(axis)))};
}

OpSample narrow_sample(Sampler& s) {
  const Shape shape = sample_shape(s, 1, 4);
  const int axis = static_cast<int>(s.integer(0, shape.size() - 1));
  const int64_t start = s.integer(0, shape[axis] - 1);
  const int64_t length = s.integer(1, shape[axis] - start);
  return OpSample{{s.smooth(shape)},
                  {{"axis", int64_t{axis}}, {"start", start}, {"length", length}}};
}

OpDef narrow_def() {
  return {
      .name = "narrow",
      .summary = "elements [start, start+length) along one axis",
      .inputs = {{"x", InputKind::float_or_int64}},
      .attrs = {{"axis", AttrType::integer, std::nullopt,
                 "the axis (negative counts from the end)"},
                {"start", AttrType::integer, std::nullopt, "first index kept"},
                {"length", AttrType::integer, std::nullopt, "how many are kept"}},
      .shape = narrow_shape,
      .forward = narrow_kernel,
      .vjp = narrow_vjp,
      .vjp_formula = "dx = narrow_backward(g, axis, start, x.shape[axis])",
      .vjp_reads_outputs = false,
      .sample = narrow_sample,
  };
}

// ---- narrow_backward --------------------------------------------------------------------------

std::vector<TensorSpec> narrow_backward_shape(const OpCall& c) {
  const Shape& in = c.input(0).shape();
  const int axis = normalize_axis(c, c.attrs.integer("axis"), in.size(), "axis");
  const int64_t start = c.attrs.integer("start"), size = c.attrs.integer("size");
  if (start < 0 || start + in[axis] > size)
    shape_fail(c, "g's axis {} ({} long) placed at {} does not fit in size {}", axis, in[axis],
               start, size);
  Shape out = in;
  out[axis] = size;
  return std::vector<TensorSpec>{{out, c.input(0).dtype()}};
}

std::vector<Tensor> narrow_backward_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  return narrow_like(c, specs[0], /*pad=*/true);
}

std::vector<Var> narrow_backward_vjp(const VjpContext& c) {
  const int64_t axis = resolved_axis(c);
  return {narrow(c.grad_output(0), axis, c.attrs.integer("start"),
                 c.input(0).size(static_cast<int>(axis)))};
}

OpSample narrow_backward_sample(Sampler& s) {
  const Shape shape = sample_shape(s, 1, 4);
  const int axis = static_cast<int>(s.integer(0, shape.size() - 1));
  const int64_t start = s.integer(0, 2);
  return OpSample{
      {s.smooth(shape)},
      {{"axis", int64_t{axis}}, {"start", start}, {"size", start + shape[axis] + s.integer(0, 2)}}};
}

OpDef narrow_backward_def() {
  return {
      .name = "narrow_backward",
      .summary = "zero-pads g along one axis to `size`, g landing at `start` (narrow's VJP)",
      .inputs = {{"g"}},
      .attrs = {{"axis", AttrType::integer, std::nullopt, "the axis"},
                {"start", AttrType::integer, std::nullopt, "where g starts"},
                {"size", AttrType::integer, std::nullopt, "the padded size of the axis"}},
      .shape = narrow_backward_shape,
      .forward = narrow_backward_kernel,
      .vjp = narrow_backward_vjp,
      .vjp_formula = "dg = narrow(gg, axis, start, g.shape[axis])",
      .vjp_reads_outputs = false,
      .sample = narrow_backward_sample,
  };
}

// ---- cat --------------------------------------------------------------------------------------

std::vector<TensorSpec> cat_shape(const OpCall& c) {
  const Tensor& first = c.input(0);
  if (first.dim() == 0) shape_fail(c, "x1 is a scalar; cat needs tensors with at least one axis");
  const int axis = normalize_axis(c, c.attrs.integer("axis"), first.dim(), "axis");
  Shape out = first.shape();
  for (size_t i = 1; i < c.inputs.size(); ++i) {
    const Tensor& x = c.input(static_cast<int>(i));
    const std::string name = c.op.input_name(i);
    if (x.dtype() != first.dtype())
      shape_fail(c, "{} is {} but x1 is {}; every input must have the same dtype", name, x.dtype(),
                 first.dtype());
    bool same = x.dim() == first.dim();
    for (int d = 0; same && d < x.dim(); ++d) same = d == axis || x.shape()[d] == out[d];
    if (!same)
      shape_fail(c, "{} is {} but x1 is {}; shapes must agree on every axis but axis {}", name,
                 x.shape(), first.shape(), axis);
    out[axis] += x.shape()[axis];
  }
  return std::vector<TensorSpec>{{out, first.dtype()}};
}

std::vector<Tensor> cat_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor y(specs[0].shape, specs[0].dtype);
  const int axis = static_cast<int>(resolved_axis_of(c.attrs.integer("axis"), y.dim()));
  const Window window = window_of(y.shape(), axis);
  const int64_t y_span = y.shape()[axis] * window.inner;
  // Where each input's block starts within a row of y.
  std::vector<int64_t> offsets(c.inputs.size());
  for (size_t i = 1; i < c.inputs.size(); ++i)
    offsets[i] = offsets[i - 1] + c.inputs[i - 1].shape()[axis] * window.inner;
  // One task per (row, input): a U-Net's skip join is a few large copies, split across threads.
  const int64_t pieces = window.outer * static_cast<int64_t>(c.inputs.size());
  kernels::parallel_for(
      pieces, y_span / std::max<int64_t>(pieces / window.outer, 1), [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          const int64_t row = k / static_cast<int64_t>(c.inputs.size());
          const size_t i = static_cast<size_t>(k) % c.inputs.size();
          const Tensor& x = c.inputs[i];
          const int64_t x_span = x.shape()[axis] * window.inner;
          dispatch_any(x.dtype(), [&](auto t) {
            using T = decltype(t);
            copy_window(x.data<T>() + row * x_span, x_span, y.data<T>() + row * y_span, y_span, 1,
                        0, offsets[i], x_span);
          });
        }
      });
  return {y};
}

std::vector<Var> cat_vjp(const VjpContext& c) {
  const int64_t axis = resolved_axis(c);
  std::vector<Var> grads(c.inputs.size());
  int64_t start = 0;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const int64_t length = c.input(static_cast<int>(i)).size(static_cast<int>(axis));
    if (c.needs(static_cast<int>(i))) grads[i] = narrow(c.grad_output(0), axis, start, length);
    start += length;
  }
  return grads;
}

// One to three inputs of rank 1 to 4 joined along an axis (written negative half of the time);
// the draws start at axis 1, so that shrinking keeps the sample batched.
OpSample cat_sample(Sampler& s) {
  const Shape shape = sample_shape(s, 1, 4);
  const int64_t rank = shape.size(), axis = (s.integer(0, rank - 1) + 1) % rank;
  const int64_t n = s.integer(1, 3);
  OpSample sample{{}, {{"axis", s.boolean() ? axis : axis - rank}}};
  for (int64_t i = 0; i < n; ++i) {
    Shape part = shape;
    part[static_cast<int>(axis)] = s.integer(1, 3);
    sample.inputs.push_back(s.smooth(part));
  }
  if (axis != 0 && rank > 1) sample.batched = all_batched(sample.inputs.size());
  return sample;
}

OpDef cat_def() {
  return {
      .name = "cat",
      .summary = "joins x1, x2, ... along an axis (torch.cat); all other axes must agree",
      .inputs = {{"x", InputKind::float_or_int64, false, true}},
      .attrs = {{"axis", AttrType::integer, AttrValue(1),
                 "the axis joined; negative counts from the end"}},
      .shape = cat_shape,
      .forward = cat_kernel,
      .vjp = cat_vjp,
      .vjp_formula = "dx_i = narrow(g, axis, offset_i, x_i.shape[axis])",
      .vjp_reads_outputs = false,
      .sample = cat_sample,
  };
}

}  // namespace

void register_shape_ops() {
  register_builtin(cat_def());
  register_builtin(reshape_def());
  register_builtin(flatten_def());
  register_builtin(permute_def());
  register_builtin(narrow_def());
  register_builtin(narrow_backward_def());
}

Var cat(std::span<const Var> xs, int64_t axis, Loc loc) {
  static const OpDef& op = builtin("cat");
  return call_first(op, xs, Attrs(op, {{"axis", axis}}), loc);
}
Var cat(std::initializer_list<Var> xs, int64_t axis, Loc loc) {
  return cat(std::span<const Var>(xs.begin(), xs.size()), axis, loc);
}
Var reshape(const Var& x, const Shape& shape, Loc loc) {
  static const OpDef& op = builtin("reshape");
  return call_op(op, {x}, Attrs(op, {{"shape", shape}}), loc);
}
Var flatten(const Var& x, Loc loc) {
  static const OpDef& op = builtin("flatten");
  return call_op(op, {x}, loc);
}
Var permute(const Var& x, const Ints& dims, Loc loc) {
  static const OpDef& op = builtin("permute");
  return call_op(op, {x}, Attrs(op, {{"dims", dims}}), loc);
}
Var narrow(const Var& x, int64_t axis, int64_t start, int64_t length, Loc loc) {
  static const OpDef& op = builtin("narrow");
  return call_op(op, {x}, Attrs(op, {{"axis", axis}, {"start", start}, {"length", length}}), loc);
}
Var narrow_backward(const Var& g, int64_t axis, int64_t start, int64_t size, Loc loc) {
  static const OpDef& op = builtin("narrow_backward");
  return call_op(op, {g}, Attrs(op, {{"axis", axis}, {"start", start}, {"size", size}}), loc);
}

}  // namespace dg
