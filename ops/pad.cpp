// The padding family: pad2d (F.pad on the last two axes: constant, reflect or replicate) and its
// adjoint pad2d_backward. Both read a padded position through one rule, source_index, so the
// backward op is exactly the transpose of the forward: each padded cell's gradient goes back to
// the input cell it was copied from (reflect and replicate add up copies; constant padding has
// no source and drops it). Each op is the other's VJP.
#include <string>

#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {

enum class PadMode { constant, reflect, replicate };

PadMode pad_mode(const OpCall& c) {
  const std::string& mode = c.attrs.string("mode");
  if (mode == "constant") return PadMode::constant;
  if (mode == "reflect") return PadMode::reflect;
  if (mode == "replicate") return PadMode::replicate;
  shape_fail(c, "mode must be \"constant\", \"reflect\" or \"replicate\", got \"{}\"", mode);
}

// The pads [left, right, top, bottom], as F.pad takes them for the last two axes.
struct Pads {
  int64_t left, right, top, bottom;
};

// Checks the pads against the unpadded planes [.., H, W] (`plane`).
Pads checked_pads(const OpCall& c, const Shape& plane, PadMode mode) {
  const Ints& p = c.attrs.ints("pads");
  if (p.size() != 4) shape_fail(c, "pads must be 4 values [left, right, top, bottom], got {}", p);
  const Pads pads{p[0], p[1], p[2], p[3]};
  if (pads.left < 0 || pads.right < 0 || pads.top < 0 || pads.bottom < 0)
    shape_fail(c, "pads must not be negative, got {} (narrow crops)", p);
  const int64_t H = plane[plane.size() - 2], W = plane.back();
  if (mode == PadMode::reflect &&
      (pads.top >= H || pads.bottom >= H || pads.left >= W || pads.right >= W))
    shape_fail(c,
               "reflect padding must be smaller than the padded axis: pads {} on a {}x{} plane "
               "(each of left/right < {}, top/bottom < {})",
               p, H, W, W, H);
  if (mode == PadMode::replicate && (H == 0 || W == 0) &&
      (pads.left || pads.right || pads.top || pads.bottom))
    shape_fail(c, "replicate padding needs a non-empty plane, got {}x{}", H, W);
  return pads;
}

// The input index a padded position p (p < 0 or p >= n: in the padding) reads, or -1 for
// constant padding there.
int64_t source_index(int64_t p, int64_t n, PadMode mode) {
  if (p >= 0 && p < n) return p;
  switch (mode) {
    case PadMode::constant:
      return -1;
    case PadMode::reflect:
      return p < 0 ? -p : 2 * (n - 1) - p;
    case PadMode::replicate:
      return p < 0 ? 0 : n - 1;
  }
  return -1;
}

struct PadGeometry {
  int64_t planes, H, W, Ho, Wo;
  Pads pads;
  PadMode mode;
};

PadGeometry pad_geometry(const Shape& unpadded, const Pads& pads, PadMode mode) {
  const int rank = unpadded.size();
  const int64_t H = unpadded[rank - 2], W = unpadded[rank - 1];
  int64_t planes = 1;
  for (int d = 0; d < rank - 2; ++d) planes *= unpadded[d];
  return {planes, H, W, H + pads.top + pads.bottom, W + pads.left + pads.right, pads, mode};
}

// Visits every padded cell (i, j) with the input cell it reads (-1: constant padding).
template <class Visit>
void for_each_padded_cell(const PadGeometry& g, Visit visit) {
  for (int64_t i = 0; i < g.Ho; ++i) {
    const int64_t h = source_index(i - g.pads.top, g.H, g.mode);
    for (int64_t j = 0; j < g.Wo; ++j) {
      const int64_t w = source_index(j - g.pads.left, g.W, g.mode);
      visit(i * g.Wo + j, h < 0 || w < 0 ? -1 : h * g.W + w);
    }
  }
}

Shape padded_shape(const Shape& s, const Pads& pads) {
  Shape out = s;
  out[out.size() - 2] += pads.top + pads.bottom;
  out[out.size() - 1] += pads.left + pads.right;
  return out;
}

void expect_planes(const OpCall& c, const char* arg) {
  if (c.input(0).dim() < 2)
    shape_fail(c, "{} must have at least 2 axes (the padded H and W last), got {}", arg,
               c.input(0).shape());
}

AttrSpec pads_attr() {
  return {"pads", AttrType::ints, std::nullopt, "[left, right, top, bottom], as F.pad"};
}
AttrSpec mode_attr() {
  return {"mode", AttrType::string, AttrValue("constant"),
          "\"constant\", \"reflect\" or \"replicate\""};
}

// ---- pad2d -----------------------------------------------------------------------------------

std::vector<TensorSpec> pad2d_shape(const OpCall& c) {
  expect_planes(c, "x");
  const Pads pads = checked_pads(c, c.input(0).shape(), pad_mode(c));
  return {{padded_shape(c.input(0).shape(), pads), c.input(0).dtype()}};
}

std::vector<Tensor> pad2d_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor& x = c.input(0);
  const PadMode mode = pad_mode(c);
  const PadGeometry g = pad_geometry(x.shape(), checked_pads(c, x.shape(), mode), mode);
  Tensor y(specs[0].shape, specs[0].dtype);
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const T value = static_cast<T>(c.attrs.real("value"));
    kernels::parallel_for(g.planes, g.Ho * g.Wo, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const T* in = px + p * g.H * g.W;
        T* out = py + p * g.Ho * g.Wo;
        for_each_padded_cell(
            g, [&](int64_t cell, int64_t source) { out[cell] = source < 0 ? value : in[source]; });
      }
    });
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> pad2d_vjp(const VjpContext& c) {
  const Shape& x = c.input(0).shape();
  return {pad2d_backward(c.grad_output(0), c.attrs.ints("pads"), c.attrs.string("mode"),
                         {x[x.size() - 2], x[x.size() - 1]})};
}

// Rank 2 to 4, a random mode, pads that the mode allows (reflect: smaller than the axis).
OpSample pad2d_sample(Sampler& s) {
  const Shape x = sample_shape(s, 2, 4, 5);
  const std::string mode = s.choose<const char*>({"constant", "reflect", "replicate"});
  const int64_t H = x[x.size() - 2], W = x.back();
  auto pad = [&](int64_t axis) { return s.integer(0, mode == "reflect" ? axis - 1 : 3); };
  const Ints pads{pad(W), pad(W), pad(H), pad(H)};
  return OpSample{{s.smooth(x)},
                  {{"pads", pads}, {"mode", mode}, {"value", s.choose({0.0, 1.5})}},
                  x.size() > 2 ? all_batched(1) : std::vector<bool>{}};
}

OpDef pad2d_def() {
  return {
      .name = "pad2d",
      .summary = "pads the last two axes (F.pad): constant value, reflection or the edge value",
      .inputs = {{"x"}},
      .attrs = {pads_attr(),
                mode_attr(),
                {"value", AttrType::real, AttrValue(0.0), "the constant mode's fill"}},
      .shape = pad2d_shape,
      .forward = pad2d_kernel,
      .vjp = pad2d_vjp,
      .vjp_formula = "dx = pad2d_backward(g, pads, mode, [H, W])",
      .vjp_reads_outputs = false,
      .sample = pad2d_sample,
  };
}

// ---- pad2d_backward --------------------------------------------------------------------------

std::vector<TensorSpec> pad2d_backward_shape(const OpCall& c) {
  expect_planes(c, "g");
  const Pair in = c.attrs.pair("input_size");
  Shape x = c.input(0).shape();
  x[x.size() - 2] = in.h;
  x[x.size() - 1] = in.w;
  if (in.h < 0 || in.w < 0)
    shape_fail(c, "input_size must not be negative, got [{},{}]", in.h, in.w);
  const Pads pads = checked_pads(c, x, pad_mode(c));
  if (!(padded_shape(x, pads) == c.input(0).shape()))
    shape_fail(c, "g is {} but padding a {}x{} plane by {} gives {}", c.input(0).shape(), in.h,
               in.w, c.attrs.ints("pads"), padded_shape(x, pads));
  return {{x, c.input(0).dtype()}};
}

std::vector<Tensor> pad2d_backward_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor& g = c.input(0);
  const PadMode mode = pad_mode(c);
  const PadGeometry geo = pad_geometry(specs[0].shape, checked_pads(c, specs[0].shape, mode), mode);
  Tensor x = Tensor::zeros(specs[0].shape, specs[0].dtype);
  dispatch_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* pg = g.data<T>();
    T* px = x.data<T>();
    kernels::parallel_for(geo.planes, geo.Ho * geo.Wo, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const T* in = pg + p * geo.Ho * geo.Wo;
        T* out = px + p * geo.H * geo.W;
        for_each_padded_cell(geo, [&](int64_t cell, int64_t source) {
          if (source >= 0) out[source] += in[cell];
        });
      }
    });
  });
  return std::vector<Tensor>{x};
}

// Linear in g: its VJP is the map it transposes, with nothing filled in (value 0).
std::vector<Var> pad2d_backward_vjp(const VjpContext& c) {
  return {pad2d(c.grad_output(0),
                {.pads = c.attrs.ints("pads"), .mode = c.attrs.string("mode"), .value = 0.0})};
}

OpSample pad2d_backward_sample(Sampler& s) {
  OpSample forward = pad2d_sample(s);
  const Shape& x = forward.inputs[0].shape();
  const Ints& p = forward.attrs[0].second.as<Ints>();
  Shape g = x;
  g[g.size() - 2] += p[2] + p[3];
  g[g.size() - 1] += p[0] + p[1];
  return OpSample{
      {s.smooth(g)},
      {forward.attrs[0], forward.attrs[1], {"input_size", Ints{x[x.size() - 2], x[x.size() - 1]}}},
      forward.batched};
}

OpDef pad2d_backward_def() {
  return {
      .name = "pad2d_backward",
      .summary = "adds each padded cell's g to the cell it was copied from (pad2d's adjoint)",
      .inputs = {{"g"}},
      .attrs = {pads_attr(),
                mode_attr(),
                {"input_size", AttrType::pair, std::nullopt, "[H, W] of the unpadded input", "in"}},
      .shape = pad2d_backward_shape,
      .forward = pad2d_backward_kernel,
      .vjp = pad2d_backward_vjp,
      .vjp_formula = "dg = pad2d(gg, pads, mode, value 0)",
      .vjp_reads_outputs = false,
      .sample = pad2d_backward_sample,
  };
}

}  // namespace

void register_pad_ops() {
  register_builtin(pad2d_def());
  register_builtin(pad2d_backward_def());
}

Var pad2d(const Var& x, Pad2dOptions o, Loc loc) {
  static const OpDef& op = builtin("pad2d");
  return call_op(op, {x}, Attrs(op, {{"pads", o.pads}, {"mode", o.mode}, {"value", o.value}}), loc);
}

Var pad2d_backward(const Var& g, const Ints& pads, const std::string& mode, Pair input_size,
                   Loc loc) {
  static const OpDef& op = builtin("pad2d_backward");
  return call_op(op, {g}, Attrs(op, {{"pads", pads}, {"mode", mode}, {"input_size", input_size}}),
                 loc);
}

}  // namespace dg
