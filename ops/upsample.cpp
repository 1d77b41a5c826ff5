// The upsampling family: upsample_nearest2d and upsample_bilinear2d (F.interpolate to an
// output_size, modes "nearest" and "bilinear") and their adjoints, the *_backward ops.
//
// Both modes are linear maps built from one separable table per axis: output row i reads input
// rows taps[i] with weights; output cell (i, j) is sum_a sum_b wh_a * ww_b * x[h_a, w_b]
// (nearest has one tap of weight 1 per axis, bilinear two). The forward op gathers through the
// tables, the backward op scatters through the same tables (its exact transpose), so each op is
// the other's VJP and second derivatives come for free.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {

enum class Mode { nearest, bilinear };

// Which input indices (at most two) one output index reads, and with what weights.
struct Taps {
  int64_t index[2] = {0, 0};
  double weight[2] = {1.0, 0.0};
  int count = 1;
};

// PyTorch 1.13's nearest rule (aten/src/ATen/native/UpSample.h, nearest_idx): same size is the
// identity, exact doubling halves, otherwise floor(o * in/out) computed in float, clamped.
int64_t nearest_source(int64_t o, int64_t in, int64_t out) {
  if (out == in) return o;
  if (out == 2 * in) return o >> 1;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  return std::min(static_cast<int64_t>(std::floor(static_cast<float>(o) * scale)), in - 1);
}

// PyTorch's bilinear rule (area_pixel_compute_source_index), in the tensor's precision T:
// align_corners maps the corner pixels' centres onto each other, otherwise pixel areas are
// aligned (half-pixel offsets), clamped at 0; the upper neighbour is clamped at the edge.
template <class T>
Taps bilinear_taps(int64_t o, int64_t in, int64_t out, bool align_corners) {
  const T scale = align_corners
                      ? (out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0))
                      : static_cast<T>(in) / static_cast<T>(out);
  const T src = align_corners ? scale * static_cast<T>(o)
                              : std::max(scale * (static_cast<T>(o) + T(0.5)) - T(0.5), T(0));
  const auto lo = static_cast<int64_t>(src);
  const T frac = src - static_cast<T>(lo);
  Taps t;
  t.count = 2;
  t.index[0] = lo;
  t.index[1] = lo + (lo < in - 1 ? 1 : 0);
  t.weight[0] = static_cast<double>(T(1) - frac);
  t.weight[1] = static_cast<double>(frac);
  return t;
}

template <class T>
std::vector<Taps> axis_taps(Mode mode, int64_t in, int64_t out, bool align_corners) {
  std::vector<Taps> taps(out);
  for (int64_t o = 0; o < out; ++o) {
    if (mode == Mode::nearest)
      taps[o].index[0] = nearest_source(o, in, out);
    else
      taps[o] = bilinear_taps<T>(o, in, out, align_corners);
  }
  return taps;
}

bool align_corners_of(const Attrs& attrs) {
  return attrs.op()->attr_index("align_corners") >= 0 && attrs.boolean("align_corners");
}

// One axis's taps with the weights in the tensor's precision.
template <class T>
struct AxisMap {
  std::vector<int64_t> lo, hi;  // the (at most) two sources of each output index
  std::vector<T> w_lo, w_hi;    // their weights (w_hi 0 for nearest)
  AxisMap(Mode mode, int64_t in, int64_t out, bool align_corners) {
    const std::vector<Taps> taps = axis_taps<T>(mode, in, out, align_corners);
    for (const Taps& t : taps) {
      lo.push_back(t.index[0]);
      hi.push_back(t.count > 1 ? t.index[1] : t.index[0]);
      w_lo.push_back(static_cast<T>(t.weight[0]));
      w_hi.push_back(t.count > 1 ? static_cast<T>(t.weight[1]) : T(0));
    }
  }
};

// y = A x (transpose false: x [N,C,H,W] -> y [N,C,Ho,Wo]) or dx = A^T g (transpose true:
// g [N,C,Ho,Wo] -> the zeroed dx [N,C,H,W]), A separable: rows first, then columns. For each
// output row i the two source rows are blended into one row of W values (vectorised), and the
// output row gathers its two taps from that row; the transpose runs the same steps backwards.
template <class T>
void resample(Mode mode, bool align_corners, const Tensor& from, Tensor& to, bool transpose) {
  using Row = Eigen::Array<T, Eigen::Dynamic, 1>;
  using RowMap = Eigen::Map<Row>;
  using ConstRowMap = Eigen::Map<const Row>;
  const Shape& small = transpose ? to.shape() : from.shape();
  const Shape& large = transpose ? from.shape() : to.shape();
  const int64_t H = small[2], W = small[3], Ho = large[2], Wo = large[3];
  const AxisMap<T> rows(mode, H, Ho, align_corners), cols(mode, W, Wo, align_corners);
  kernels::parallel_for(small[0] * small[1], Ho * Wo * 4, [&](int64_t p0, int64_t p1) {
    Row blend(W);
    for (int64_t p = p0; p < p1; ++p) {
      if (!transpose) {
        const T* x = from.data<T>() + p * H * W;
        T* y = to.data<T>() + p * Ho * Wo;
        for (int64_t i = 0; i < Ho; ++i) {
          T* out = y + i * Wo;
          if (mode == Mode::nearest) {  // a copy: no weights, so infinities stay infinities
            const T* source = x + rows.lo[i] * W;
            for (int64_t j = 0; j < Wo; ++j) out[j] = source[cols.lo[j]];
            continue;
          }
          blend = rows.w_lo[i] * ConstRowMap(x + rows.lo[i] * W, W) +
                  rows.w_hi[i] * ConstRowMap(x + rows.hi[i] * W, W);
          for (int64_t j = 0; j < Wo; ++j)
            out[j] = cols.w_lo[j] * blend[cols.lo[j]] + cols.w_hi[j] * blend[cols.hi[j]];
        }
      } else {
        const T* g = from.data<T>() + p * Ho * Wo;
        T* dx = to.data<T>() + p * H * W;
        for (int64_t i = 0; i < Ho; ++i) {
          blend.setZero();
          const T* in = g + i * Wo;
          if (mode == Mode::nearest) {
            for (int64_t j = 0; j < Wo; ++j) blend[cols.lo[j]] += in[j];
            RowMap(dx + rows.lo[i] * W, W) += blend;
            continue;
          }
          for (int64_t j = 0; j < Wo; ++j) {
            blend[cols.lo[j]] += cols.w_lo[j] * in[j];
            blend[cols.hi[j]] += cols.w_hi[j] * in[j];
          }
          RowMap(dx + rows.lo[i] * W, W) += rows.w_lo[i] * blend;
          RowMap(dx + rows.hi[i] * W, W) += rows.w_hi[i] * blend;
        }
      }
    }
  });
}

void check_size(const OpCall& c, const char* attr, Pair size) {
  if (size.h < 1 || size.w < 1)
    shape_fail(c, "{} must be positive [h, w], got [{},{}]", attr, size.h, size.w);
}

void check_planes(const OpCall& c, const char* arg) {
  expect_rank(c, 0, 4, "[N,C,H,W]");
  const Shape& x = c.input(0).shape();
  if (x[2] < 1 || x[3] < 1) shape_fail(c, "{} has empty planes: {}", arg, x);
}

// ---- the forward ops ----------------------------------------------------------------------

std::vector<TensorSpec> upsample_shape(const OpCall& c) {
  check_planes(c, "x");
  const Pair out = c.attrs.pair("output_size");
  check_size(c, "output_size", out);
  const Shape& x = c.input(0).shape();
  return {{{x[0], x[1], out.h, out.w}, c.input(0).dtype()}};
}

template <Mode mode>
std::vector<Tensor> upsample_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor y(specs[0].shape, specs[0].dtype);
  dispatch_float(y.dtype(), [&](auto t) {
    resample<decltype(t)>(mode, align_corners_of(c.attrs), c.input(0), y, false);
  });
  return std::vector<Tensor>{y};
}

Pair plane_of(const Var& v) { return {v.shape()[2], v.shape()[3]}; }

std::vector<Var> upsample_nearest2d_vjp(const VjpContext& c) {
  return {upsample_nearest2d_backward(c.grad_output(0), plane_of(c.input(0)))};
}

std::vector<Var> upsample_bilinear2d_vjp(const VjpContext& c) {
  return {upsample_bilinear2d_backward(c.grad_output(0), plane_of(c.input(0)),
                                       c.attrs.boolean("align_corners"))};
}

// Small planes and an output of 1 to 7 per axis: larger (upsampling), equal and smaller sizes,
// exact doubling among them.
OpSample upsample_sample(Sampler& s, bool bilinear) {
  const Shape x{s.integer(1, 2), s.integer(1, 2), s.integer(1, 4), s.integer(1, 4)};
  const Ints out{s.integer(1, 7), s.integer(1, 7)};
  OpSample sample{{s.smooth(x)}, {{"output_size", out}}, all_batched(1)};
  if (bilinear) sample.attrs.push_back({"align_corners", s.boolean()});
  return sample;
}

AttrSpec output_size_attr() {
  return {"output_size", AttrType::pair, std::nullopt, "[h, w] of the output planes", "to"};
}
AttrSpec align_corners_attr() {
  return {"align_corners", AttrType::boolean, AttrValue(false),
          "corner pixel centres map onto each other (else half-pixel alignment)", "ac"};
}

OpDef upsample_nearest2d_def() {
  return {
      .name = "upsample_nearest2d",
      .summary =
          "resizes [N,C,H,W] planes to output_size by copying the nearest pixel "
          "(F.interpolate, mode \"nearest\")",
      .inputs = {{"x"}},
      .attrs = {output_size_attr()},
      .shape = upsample_shape,
      .forward = upsample_kernel<Mode::nearest>,
      .vjp = upsample_nearest2d_vjp,
      .vjp_formula = "dx = upsample_nearest2d_backward(g, [H, W])",
      .vjp_reads_outputs = false,
      .sample = [](Sampler& s) { return upsample_sample(s, false); },
  };
}

OpDef upsample_bilinear2d_def() {
  return {
      .name = "upsample_bilinear2d",
      .summary =
          "resizes [N,C,H,W] planes to output_size by bilinear interpolation "
          "(F.interpolate, mode \"bilinear\")",
      .inputs = {{"x"}},
      .attrs = {output_size_attr(), align_corners_attr()},
      .shape = upsample_shape,
      .forward = upsample_kernel<Mode::bilinear>,
      .vjp = upsample_bilinear2d_vjp,
      .vjp_formula = "dx = upsample_bilinear2d_backward(g, [H, W], align_corners)",
      .vjp_reads_outputs = false,
      .sample = [](Sampler& s) { return upsample_sample(s, true); },
  };
}

// ---- the adjoints -------------------------------------------------------------------------

std::vector<TensorSpec> upsample_backward_shape(const OpCall& c) {
  check_planes(c, "g");
  const Pair in = c.attrs.pair("input_size");
  check_size(c, "input_size", in);
  const Shape& g = c.input(0).shape();
  return {{{g[0], g[1], in.h, in.w}, c.input(0).dtype()}};
}

template <Mode mode>
std::vector<Tensor> upsample_backward_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor dx = Tensor::zeros(specs[0].shape, specs[0].dtype);
  dispatch_float(dx.dtype(), [&](auto t) {
    resample<decltype(t)>(mode, align_corners_of(c.attrs), c.input(0), dx, true);
  });
  return std::vector<Tensor>{dx};
}

std::vector<Var> upsample_nearest2d_backward_vjp(const VjpContext& c) {
  return {upsample_nearest2d(c.grad_output(0), plane_of(c.input(0)))};
}

std::vector<Var> upsample_bilinear2d_backward_vjp(const VjpContext& c) {
  return {upsample_bilinear2d(c.grad_output(0), plane_of(c.input(0)),
                              {.align_corners = c.attrs.boolean("align_corners")})};
}

OpSample upsample_backward_sample(Sampler& s, bool bilinear) {
  OpSample forward = upsample_sample(s, bilinear);
  const Shape& x = forward.inputs[0].shape();
  const Ints out = forward.attrs[0].second.as<Ints>();
  OpSample sample{
      {s.smooth({x[0], x[1], out[0], out[1]})}, {{"input_size", Ints{x[2], x[3]}}}, all_batched(1)};
  if (bilinear) sample.attrs.push_back(forward.attrs[1]);
  return sample;
}

AttrSpec input_size_attr() {
  return {"input_size", AttrType::pair, std::nullopt, "[H, W] of the upsampled input", "in"};
}

OpDef upsample_nearest2d_backward_def() {
  return {
      .name = "upsample_nearest2d_backward",
      .summary =
          "adds each output pixel's g to the input pixel it copied (upsample_nearest2d's "
          "adjoint)",
      .inputs = {{"g"}},
      .attrs = {input_size_attr()},
      .shape = upsample_backward_shape,
      .forward = upsample_backward_kernel<Mode::nearest>,
      .vjp = upsample_nearest2d_backward_vjp,
      .vjp_formula = "dg = upsample_nearest2d(gg, [h, w])",
      .vjp_reads_outputs = false,
      .sample = [](Sampler& s) { return upsample_backward_sample(s, false); },
  };
}

OpDef upsample_bilinear2d_backward_def() {
  return {
      .name = "upsample_bilinear2d_backward",
      .summary =
          "spreads each output pixel's g over its four bilinear source pixels "
          "(upsample_bilinear2d's adjoint)",
      .inputs = {{"g"}},
      .attrs = {input_size_attr(), align_corners_attr()},
      .shape = upsample_backward_shape,
      .forward = upsample_backward_kernel<Mode::bilinear>,
      .vjp = upsample_bilinear2d_backward_vjp,
      .vjp_formula = "dg = upsample_bilinear2d(gg, [h, w], align_corners)",
      .vjp_reads_outputs = false,
      .sample = [](Sampler& s) { return upsample_backward_sample(s, true); },
  };
}

}  // namespace

void register_upsample_ops() {
  register_builtin(upsample_nearest2d_def());
  register_builtin(upsample_nearest2d_backward_def());
  register_builtin(upsample_bilinear2d_def());
  register_builtin(upsample_bilinear2d_backward_def());
}

Var upsample_nearest2d(const Var& x, Pair output_size, Loc loc) {
  static const OpDef& op = builtin("upsample_nearest2d");
  return call_op(op, {x}, Attrs(op, {{"output_size", output_size}}), loc);
}
Var upsample_nearest2d_backward(const Var& g, Pair input_size, Loc loc) {
  static const OpDef& op = builtin("upsample_nearest2d_backward");
  return call_op(op, {g}, Attrs(op, {{"input_size", input_size}}), loc);
}
Var upsample_bilinear2d(const Var& x, Pair output_size, UpsampleBilinearOptions options, Loc loc) {
  static const OpDef& op = builtin("upsample_bilinear2d");
  return call_op(
      op, {x}, Attrs(op, {{"output_size", output_size}, {"align_corners", options.align_corners}}),
      loc);
}
Var upsample_bilinear2d_backward(const Var& g, Pair input_size, bool align_corners, Loc loc) {
  static const OpDef& op = builtin("upsample_bilinear2d_backward");
  return call_op(op, {g}, Attrs(op, {{"input_size", input_size}, {"align_corners", align_corners}}),
                 loc);
}

}  // namespace dg
