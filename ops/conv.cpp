// The convolution family: conv2d, conv_transpose2d, the weight gradient conv2d_weight_grad,
// and conv1x1. float32 runs on oneDNN's JIT convolutions (kernels/dnnl_conv.h: about twice as
// fast as a GEMM lowering). float64, and whatever oneDNN declines, lowers to GEMMs
// (im2col/col2im around kernels::gemm; no im2col at all for pointwise convolutions), split
// over the images of the batch.
//
// The family is closed under differentiation: conv2d's input-gradient is conv_transpose2d with
// the same weights, conv_transpose2d's is conv2d, and both weight gradients are
// conv2d_weight_grad, whose own VJP is again a conv_transpose2d and a conv2d.
#include <vector>

#include <functional>
#include <type_traits>

#include "kernels/dnnl_conv.h"
#include "kernels/gemm.h"
#include "kernels/im2col.h"
#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {

// ---- geometry -----------------------------------------------------------------------------

struct ConvAttrs {
  Pair stride;
  Padding padding;  // resolved: four numbers, never "same"
  Pair dilation, output_padding{0, 0};
  int64_t groups;
};

// `kernel` is the weight's kH x kW (conv2d_weight_grad: its kernel_size).
ConvAttrs conv_attrs(const Attrs& a, bool transposed, Pair kernel) {
  ConvAttrs c{a.pair("stride"), {}, a.pair("dilation"), {0, 0}, a.integer("groups")};
  c.padding = a.padding("padding").resolved(kernel, c.dilation);
  if (transposed) c.output_padding = a.pair("output_padding");
  return c;
}

Pair kernel_of(const Shape& w) { return w.size() == 4 ? Pair{w[2], w[3]} : Pair{1, 1}; }

// Output size of conv2d along one axis, with `pads` rows (or columns) of padding in all:
// (H + pads - d(k-1) - 1)/s + 1, floored.
int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t pads, int64_t d) {
  const int64_t span = in + pads - d * (k - 1) - 1;
  return span < 0 ? 0 : span / s + 1;
}
// Output size of conv_transpose2d along one axis: (H-1)s - pads + d(k-1) + op + 1.
int64_t conv_transpose_out(int64_t in, int64_t k, int64_t s, int64_t pads, int64_t d, int64_t op) {
  return (in - 1) * s - pads + d * (k - 1) + op + 1;
}

void check_conv_attrs(const OpCall& c, const ConvAttrs& a, bool transposed) {
  if (a.stride.h < 1 || a.stride.w < 1)
    shape_fail(c, "stride must be at least 1, got [{},{}]", a.stride.h, a.stride.w);
  if (a.dilation.h < 1 || a.dilation.w < 1)
    shape_fail(c, "dilation must be at least 1, got [{},{}]", a.dilation.h, a.dilation.w);
  const Padding given = c.attrs.padding("padding");
  if (given.same() && transposed)
    shape_fail(c,
               "padding \"same\" is for conv2d; a transposed convolution takes numbers "
               "([top, bottom, left, right])");
  if (given.same() && !(a.stride == Pair{1, 1}))
    shape_fail(c,
               "padding \"same\" needs stride 1, got stride [{},{}] (a strided convolution "
               "takes explicit [top, bottom, left, right] padding)",
               a.stride.h, a.stride.w);
  const Padding& p = a.padding;
  if (p.top < 0 || p.bottom < 0 || p.left < 0 || p.right < 0)
    shape_fail(c, "padding must not be negative, got {}", padding_text(p));
  if (a.groups < 1) shape_fail(c, "groups must be at least 1, got {}", a.groups);
}

std::string attrs_text(const ConvAttrs& a) {
  return fmt::format("stride [{},{}], padding {}, dilation [{},{}]", a.stride.h, a.stride.w,
                     padding_text(a.padding), a.dilation.h, a.dilation.w);
}

// The output_padding that makes conv_transpose2d of a conv2d output of size `out` give back
// the input size `in` (the rows the floor division of conv2d dropped).
int64_t recovered_output_padding(int64_t in, int64_t out, int64_t k, int64_t s, int64_t pads,
                                 int64_t d) {
  return in - conv_transpose_out(out, k, s, pads, d, 0);
}

void check_bias(const OpCall& c, int64_t channels) {
  if (c.has_input(2) && !(c.input(2).shape() == Shape{channels}))
    shape_fail(c, "b is {} but the output has {} channels; b must be [{}]", c.input(2).shape(),
               channels, channels);
}

// ---- kernels ------------------------------------------------------------------------------

// oneDNN's description of the conv2d from src [N,C,H,W] to dst [N,O,Ho,Wo] (for
// conv_transpose2d: the conv2d whose input gradient it is, from its output grid to its input).
kernels::DnnlConvProblem dnnl_problem(const Shape& src, const Shape& dst, int64_t kH, int64_t kW,
                                      const ConvAttrs& a) {
  return {.N = src[0],
          .C = src[1],
          .H = src[2],
          .W = src[3],
          .O = dst[1],
          .kH = kH,
          .kW = kW,
          .Ho = dst[2],
          .Wo = dst[3],
          .sh = a.stride.h,
          .sw = a.stride.w,
          .pt = a.padding.top,
          .pb = a.padding.bottom,
          .pl = a.padding.left,
          .pr = a.padding.right,
          .dh = a.dilation.h,
          .dw = a.dilation.w,
          .groups = a.groups};
}

// The im2col geometry of one group's conv2d from a C x H x W input to an Ho x Wo grid.
kernels::ConvGeometry im2col_geometry(int64_t C, int64_t H, int64_t W, int64_t kH, int64_t kW,
                                      const ConvAttrs& a, int64_t Ho, int64_t Wo) {
  return {.C = C,
          .H = H,
          .W = W,
          .kH = kH,
          .kW = kW,
          .sh = a.stride.h,
          .sw = a.stride.w,
          .ph = a.padding.top,
          .pw = a.padding.left,
          .dh = a.dilation.h,
          .dw = a.dilation.w,
          .Ho = Ho,
          .Wo = Wo};
}

// A kernel's result, allocated when first written to. oneDNN's path asks for it only after its
// blocked copies of the inputs are given back, so a convolution never holds those, its blocked
// result and the plain result at once (in a deep chain's backward pass, one value fewer).
class Output {
 public:
  explicit Output(const TensorSpec& spec) : spec_(spec) {}
  const Shape& shape() const { return spec_.shape; }
  int64_t numel() const { return spec_.shape.product(); }
  template <class T>
  T* data() {
    return allocated().data<T>();
  }
  // For oneDNN: the float buffer, allocated on the call.
  std::function<float*()> buffer() {
    return [this] { return data<float>(); };
  }
  Tensor take() { return std::move(allocated()); }

 private:
  Tensor& allocated() {
    if (!tensor_.defined()) tensor_ = Tensor(spec_.shape, spec_.dtype);
    return tensor_;
  }

  TensorSpec spec_;
  Tensor tensor_;
};

// One scratch buffer per thread, reused across calls.
template <class T>
T* scratch(int64_t n) {
  thread_local std::vector<T> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(n);
  return buffer.data();
}

// y[n] = w * im2col(x[n]) (+ b), per group. y must have the conv2d output shape.
template <class T>
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* b, const ConvAttrs& a,
                    Output& y) {
  const int64_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const int64_t O = w.shape()[0], kH = w.shape()[2], kW = w.shape()[3];
  const int64_t Ho = y.shape()[2], Wo = y.shape()[3];
  const int64_t G = a.groups, Cg = C / G, Og = O / G;
  const kernels::ConvGeometry geo = im2col_geometry(Cg, H, W, kH, kW, a, Ho, Wo);
  const int64_t K = geo.col_rows(), P = geo.col_cols();
  const T* px = x.data<T>();
  const T* pw = w.data<T>();
  const T* pb = b ? b->data<T>() : nullptr;
  if constexpr (std::is_same_v<T, float>) {
    if (kernels::dnnl_conv_forward(dnnl_problem(x.shape(), y.shape(), kH, kW, a), px, pw, pb,
                                   y.buffer()))
      return;
  }
  T* py = y.data<T>();
  kernels::parallel_for(N, O * P * K, [&](int64_t n0, int64_t n1) {
    T* col = geo.is_pointwise() ? nullptr : scratch<T>(K * P);
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t g = 0; g < G; ++g) {
        const T* xg = px + (n * C + g * Cg) * H * W;
        T* yg = py + (n * O + g * Og) * P;
        if (pb)
          for (int64_t o = 0; o < Og; ++o) std::fill(yg + o * P, yg + (o + 1) * P, pb[g * Og + o]);
        const T* rhs = xg;
        if (col) {
          kernels::im2col(xg, geo, col);
          rhs = col;
        }
        kernels::gemm<T>(false, false, Og, P, K, T(1), pw + g * Og * K, K, rhs, P, pb ? T(1) : T(0),
                         yg, P);
      }
  });
}

// y[n, o] += b[o] over the planes of y [N, O, plane].
template <class T>
void add_channel_bias(const T* b, int64_t N, int64_t O, int64_t plane, T* y) {
  kernels::parallel_for(N * O, plane, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T* row = y + i * plane;
      const T bias = b[i % O];
      for (int64_t j = 0; j < plane; ++j) row[j] += bias;
    }
  });
}

// y[n] = col2im(w^T * x[n]) (+ b), per group: the adjoint of conv2d's input map.
template <class T>
void conv_transpose2d_forward(const Tensor& x, const Tensor& w, const Tensor* b, const ConvAttrs& a,
                              Output& y) {
  const int64_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const int64_t Og = w.shape()[1], kH = w.shape()[2], kW = w.shape()[3];
  const int64_t G = a.groups, Cg = C / G, O = Og * G;
  const int64_t Ho = y.shape()[2], Wo = y.shape()[3];
  // Seen as conv2d, y is the input (Ho x Wo, Og channels per group) and x the output grid.
  const kernels::ConvGeometry geo = im2col_geometry(Og, Ho, Wo, kH, kW, a, H, W);
  const int64_t K = geo.col_rows(), P = geo.col_cols();  // K = Og*kH*kW, P = H*W
  const T* px = x.data<T>();
  const T* pw = w.data<T>();
  const T* pb = b ? b->data<T>() : nullptr;
  if constexpr (std::is_same_v<T, float>) {
    // conv_transpose2d is the input gradient of the conv2d from y's grid to x's.
    if (kernels::dnnl_conv_backward_data(dnnl_problem(y.shape(), x.shape(), kH, kW, a), px, pw,
                                         y.buffer())) {
      if (pb) add_channel_bias(pb, N, O, Ho * Wo, y.data<T>());
      return;
    }
  }
  T* py = y.data<T>();
  kernels::parallel_for(N, K * P * Cg * G, [&](int64_t n0, int64_t n1) {
    T* col = geo.is_pointwise() ? nullptr : scratch<T>(K * P);
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t g = 0; g < G; ++g) {
        const T* xg = px + (n * C + g * Cg) * P;
        T* yg = py + (n * O + g * Og) * Ho * Wo;
        const T* wg = pw + g * Cg * K;
        if (col) {
          kernels::gemm<T>(true, false, K, P, Cg, T(1), wg, K, xg, P, T(0), col, P);
          std::fill(yg, yg + Og * Ho * Wo, T(0));
          kernels::col2im_add(col, geo, yg);
        } else {
          kernels::gemm<T>(true, false, K, P, Cg, T(1), wg, K, xg, P, T(0), yg, P);
        }
      }
  });
  if (pb) add_channel_bias(pb, N, O, Ho * Wo, py);
}

// gw[o, c, p, q] = sum_{n,i,j} g[n,o,i,j] * xz[n, c, i*sh + p*dh, j*sw + q*dw] per group:
// gw_g += g[n]_g * im2col(x[n]_g)^T, summed over the batch (one partial sum per thread).
template <class T>
void conv2d_weight_grad_forward(const Tensor& x, const Tensor& g, const ConvAttrs& a, Output& gw) {
  const int64_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const int64_t O = g.shape()[1], gH = g.shape()[2], gW = g.shape()[3];
  const int64_t kH = gw.shape()[2], kW = gw.shape()[3];
  const int64_t G = a.groups, Cg = C / G, Og = O / G;
  const kernels::ConvGeometry geo = im2col_geometry(Cg, H, W, kH, kW, a, gH, gW);
  const int64_t K = geo.col_rows(), P = geo.col_cols();
  const T* px = x.data<T>();
  const T* pg = g.data<T>();
  if constexpr (std::is_same_v<T, float>) {
    if (kernels::dnnl_conv_backward_weights(dnnl_problem(x.shape(), g.shape(), kH, kW, a), px, pg,
                                            gw.buffer()))
      return;
  }
  T* out = gw.data<T>();
  std::fill(out, out + gw.numel(), T(0));
  kernels::parallel_for(N, O * P * K, [&](int64_t n0, int64_t n1) {
    std::vector<T> partial(static_cast<size_t>(gw.numel()), T(0));
    T* col = geo.is_pointwise() ? nullptr : scratch<T>(K * P);
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t grp = 0; grp < G; ++grp) {
        const T* xg = px + (n * C + grp * Cg) * H * W;
        const T* gg = pg + (n * O + grp * Og) * P;
        const T* rhs = xg;
        if (col) {
          kernels::im2col(xg, geo, col);
          rhs = col;
        }
        kernels::gemm<T>(false, true, Og, K, P, T(1), gg, P, rhs, P, T(1),
                         partial.data() + grp * Og * K, K);
      }
#pragma omp critical(dg_conv_weight_grad)
    for (size_t i = 0; i < partial.size(); ++i) out[i] += partial[i];
  });
}

// ---- registration -------------------------------------------------------------------------

std::vector<AttrSpec> conv_attr_specs(bool transposed) {
  std::vector<AttrSpec> specs{
      pair_attr("stride", 1, "s"),
      padding_attr(transposed ? "rows/columns cropped: p, [h, w] or [top, bottom, left, right]"
                              : "p, [h, w], [top, bottom, left, right], \"same\" or \"valid\"")};
  if (transposed)
    specs.push_back(pair_attr("output_padding", 0, "op", "extra rows/columns at the bottom/right"));
  specs.push_back(pair_attr("dilation", 1, "d"));
  specs.push_back({"groups", AttrType::integer, AttrValue(int64_t{1}), "channel groups", "g"});
  return specs;
}

// "conv2d k5x5 s2 p1 g2": the kernel size comes from the weight's shape.
LabelFn conv_label(int weight_input, int kernel_axis) {
  return [=](const Attrs& attrs, std::span<const Shape> shapes) {
    std::string label = default_label(*attrs.op(), attrs);
    if (static_cast<int>(shapes.size()) > weight_input && shapes[weight_input].size() == 4) {
      const Shape& w = shapes[weight_input];
      std::string kernel = " k" + pair_label(Ints{w[kernel_axis], w[kernel_axis + 1]});
      label.insert(attrs.op()->name.size(), kernel);
    }
    return label;
  };
}

void check_image(const OpCall& c, int input) { expect_rank(c, input, 4, "[N,C,H,W]"); }

std::vector<TensorSpec> conv2d_shape(const OpCall& c) {
  check_image(c, 0);
  expect_rank(c, 1, 4, "[O,C/groups,kH,kW]");
  const ConvAttrs a = conv_attrs(c.attrs, false, kernel_of(c.input(1).shape()));
  check_conv_attrs(c, a, false);
  const Shape &x = c.input(0).shape(), &w = c.input(1).shape();
  if (x[1] != w[1] * a.groups)
    shape_fail(c, "x has {} channels but w {} with groups={} expects {} (w.shape[1]*groups)", x[1],
               w, a.groups, w[1] * a.groups);
  if (w[0] % a.groups != 0)
    shape_fail(c, "w {} has {} output channels, which groups={} does not divide", w, w[0],
               a.groups);
  check_bias(c, w[0]);
  const int64_t Ho = conv_out(x[2], w[2], a.stride.h, a.padding.rows(), a.dilation.h);
  const int64_t Wo = conv_out(x[3], w[3], a.stride.w, a.padding.columns(), a.dilation.w);
  if (Ho < 1 || Wo < 1)
    shape_fail(c, "kernel [{},{}] with {} does not fit in input {}x{} (output would be {}x{})",
               w[2], w[3], attrs_text(a), x[2], x[3], Ho, Wo);
  return {{{x[0], w[0], Ho, Wo}, c.input(0).dtype()}};
}

std::vector<TensorSpec> conv_transpose2d_shape(const OpCall& c) {
  check_image(c, 0);
  expect_rank(c, 1, 4, "[C,O/groups,kH,kW]");
  const ConvAttrs a = conv_attrs(c.attrs, true, kernel_of(c.input(1).shape()));
  check_conv_attrs(c, a, true);
  const Shape &x = c.input(0).shape(), &w = c.input(1).shape();
  if (x[1] != w[0])
    shape_fail(c,
               "x has {} channels but w {} expects {} (w.shape[0]; the layout is "
               "[C_in, C_out/groups, kH, kW])",
               x[1], w, w[0]);
  if (x[1] % a.groups != 0)
    shape_fail(c, "x has {} channels, which groups={} does not divide", x[1], a.groups);
  const Pair op = a.output_padding;
  if (op.h < 0 || op.w < 0 || op.h >= std::max(a.stride.h, a.dilation.h) ||
      op.w >= std::max(a.stride.w, a.dilation.w))
    shape_fail(c,
               "output_padding [{},{}] must be smaller than max(stride, dilation) per axis "
               "([{},{}])",
               op.h, op.w, std::max(a.stride.h, a.dilation.h), std::max(a.stride.w, a.dilation.w));
  const int64_t O = w[1] * a.groups;
  check_bias(c, O);
  const int64_t Ho =
      conv_transpose_out(x[2], w[2], a.stride.h, a.padding.rows(), a.dilation.h, op.h);
  const int64_t Wo =
      conv_transpose_out(x[3], w[3], a.stride.w, a.padding.columns(), a.dilation.w, op.w);
  if (Ho < 1 || Wo < 1)
    shape_fail(c,
               "input {}x{} with kernel [{},{}], {} and output_padding [{},{}] gives an empty "
               "output ({}x{})",
               x[2], x[3], w[2], w[3], attrs_text(a), op.h, op.w, Ho, Wo);
  return {{{x[0], O, Ho, Wo}, c.input(0).dtype()}};
}

std::vector<TensorSpec> weight_grad_shape(const OpCall& c) {
  check_image(c, 0);
  check_image(c, 1);
  const Pair k = c.attrs.pair("kernel_size");
  const ConvAttrs a = conv_attrs(c.attrs, false, k);
  check_conv_attrs(c, a, false);
  if (k.h < 1 || k.w < 1) shape_fail(c, "kernel_size must be at least 1, got [{},{}]", k.h, k.w);
  const Shape &x = c.input(0).shape(), &g = c.input(1).shape();
  if (x[0] != g[0]) shape_fail(c, "x {} and g {} have different batch sizes", x, g);
  if (x[1] % a.groups != 0 || g[1] % a.groups != 0)
    shape_fail(c, "groups={} must divide x's channels ({}) and g's channels ({})", a.groups, x[1],
               g[1]);
  // g must be a conv2d output grid of x: at most the full size, and no more rows short than a
  // conv_transpose2d's output_padding can restore (that is what its VJP needs).
  const int64_t oph =
      recovered_output_padding(x[2], g[2], k.h, a.stride.h, a.padding.rows(), a.dilation.h);
  const int64_t opw =
      recovered_output_padding(x[3], g[3], k.w, a.stride.w, a.padding.columns(), a.dilation.w);
  if (g[2] < 1 || g[3] < 1 || oph < 0 || opw < 0 || oph >= std::max(a.stride.h, a.dilation.h) ||
      opw >= std::max(a.stride.w, a.dilation.w))
    shape_fail(c,
               "g's grid {}x{} is not a conv2d output of x {}x{} with kernel [{},{}] and {} "
               "(expected {}x{})",
               g[2], g[3], x[2], x[3], k.h, k.w, attrs_text(a),
               conv_out(x[2], k.h, a.stride.h, a.padding.rows(), a.dilation.h),
               conv_out(x[3], k.w, a.stride.w, a.padding.columns(), a.dilation.w));
  return {{{g[1], x[1] / a.groups, k.h, k.w}, c.input(0).dtype()}};
}

Conv2dOptions conv2d_options(const ConvAttrs& a) {
  return {.stride = a.stride, .padding = a.padding, .dilation = a.dilation, .groups = a.groups};
}

// Crops a gradient's H and W down to the input's (conv2d of a conv_transpose2d's gradient can
// come out taller when output_padding >= stride).
Var crop_to(const Var& g, const Shape& shape) {
  Var out = g;
  if (out.shape()[2] > shape[2]) out = narrow(out, 2, 0, shape[2]);
  if (out.shape()[3] > shape[3]) out = narrow(out, 3, 0, shape[3]);
  return out;
}

Var bias_grad(const Var& g) { return sum(g, {.axes = {0, 2, 3}}); }

// The conv_transpose2d that maps a conv2d's output gradient (grid `out`) back onto its input
// (size `in`): the same stride, padding, dilation and groups, and the output_padding that brings
// back the rows and columns the conv2d's floor division dropped.
ConvTranspose2dOptions adjoint_options(const ConvAttrs& a, const Shape& in, const Shape& out,
                                       Pair k) {
  return {.stride = a.stride,
          .padding = a.padding,
          .output_padding = {recovered_output_padding(in[2], out[2], k.h, a.stride.h,
                                                      a.padding.rows(), a.dilation.h),
                             recovered_output_padding(in[3], out[3], k.w, a.stride.w,
                                                      a.padding.columns(), a.dilation.w)},
          .dilation = a.dilation,
          .groups = a.groups};
}

// y = conv2d(x, w) + b: dx = conv_transpose2d(g, w) (the adjoint of the input map, with the
// same, resolved, padding), dw = conv2d_weight_grad(x, g), db = sum_{n,h,w} g.
std::vector<Var> conv2d_vjp(const VjpContext& c) {
  const Var &x = c.input(0), &w = c.input(1), &g = c.grad_output(0);
  const Pair k = kernel_of(w.shape());
  const ConvAttrs a = conv_attrs(c.attrs, false, k);
  // The weight's and bias's small gradients first: the input's, as large as x, is then not
  // held while conv2d_weight_grad's temporaries are (one activation less at the peak).
  Var dx, dw, db;
  if (c.needs(2)) db = bias_grad(g);
  if (c.needs(1)) dw = conv2d_weight_grad(x, g, k, conv2d_options(a));
  if (c.needs(0)) dx = conv_transpose2d(g, w, adjoint_options(a, x.shape(), g.shape(), k));
  return {dx, dw, db};
}

// y = conv_transpose2d(x, w) + b: dx = conv2d(g, w) (cropped when output_padding >= stride),
// dw = conv2d_weight_grad(g, x), db = sum_{n,h,w} g.
std::vector<Var> conv_transpose2d_vjp(const VjpContext& c) {
  const Var &x = c.input(0), &w = c.input(1), &g = c.grad_output(0);
  const Pair k = kernel_of(w.shape());
  const ConvAttrs a = conv_attrs(c.attrs, true, k);
  Var dx, dw, db;  // the small gradients first, as in conv2d_vjp
  if (c.needs(2)) db = bias_grad(g);
  if (c.needs(1)) dw = conv2d_weight_grad(g, x, k, conv2d_options(a));
  if (c.needs(0)) dx = crop_to(conv2d(g, w, conv2d_options(a)), x.shape());
  return {dx, dw, db};
}

// conv2d_weight_grad(x, g) is bilinear: <gw_bar, gw(x, g)> = <g, conv2d(x, gw_bar)>, so
// dx = conv_transpose2d(g, gw_bar) and dg = conv2d(x, gw_bar).
std::vector<Var> weight_grad_vjp(const VjpContext& c) {
  const Pair k = c.attrs.pair("kernel_size");
  const ConvAttrs a = conv_attrs(c.attrs, false, k);
  const Var &x = c.input(0), &g = c.input(1), &gw_bar = c.grad_output(0);
  Var dx, dg;
  if (c.needs(0)) dx = conv_transpose2d(g, gw_bar, adjoint_options(a, x.shape(), g.shape(), k));
  if (c.needs(1)) dg = crop_to(conv2d(x, gw_bar, conv2d_options(a)), g.shape());
  return {dx, dg};
}

const Tensor* optional_input(const OpCall& c, int i) {
  return c.has_input(i) ? &c.input(i) : nullptr;
}

// ---- samplers (property tests) ----------------------------------------------------------

struct SampledConv {
  int64_t N, C, O, G, kH, kW;
  ConvAttrs a;
  int64_t H, W;
};

// A random valid configuration: every attribute in a small range, the image just large enough
// for at least one output (conv2d) or a non-empty output (conv_transpose2d).
SampledConv sample_conv_config(Sampler& s, bool transposed) {
  SampledConv c{};
  c.G = s.integer(1, 3);
  c.N = s.integer(1, 2);
  c.C = c.G * s.integer(1, 2);
  c.O = c.G * s.integer(1, 2);
  c.kH = s.integer(1, 3), c.kW = s.integer(1, 3);
  c.a.stride = {s.integer(1, 3), s.integer(1, 3)};
  c.a.dilation = {s.integer(1, 2), s.integer(1, 2)};
  // Padding [h, w] half the time; else four different sides, or (conv2d) "same" at stride 1.
  switch (s.integer(0, transposed ? 2 : 3)) {
    case 0:
    case 1:
      c.a.padding = Padding(s.integer(0, 2), s.integer(0, 2));
      break;
    case 2:
      c.a.padding = {s.integer(0, 2), s.integer(0, 2), s.integer(0, 2), s.integer(0, 2)};
      break;
    default:
      c.a.padding = "same";
      c.a.stride = 1;
  }
  c.a.groups = c.G;
  const Padding p = c.a.padding.resolved({c.kH, c.kW}, c.a.dilation);
  if (transposed) {
    c.a.output_padding = {s.integer(0, std::max(c.a.stride.h, c.a.dilation.h) - 1),
                          s.integer(0, std::max(c.a.stride.w, c.a.dilation.w) - 1)};
    // Smallest input whose transposed output is non-empty.
    auto smallest = [](int64_t k, int64_t st, int64_t pads, int64_t d, int64_t op) {
      int64_t h = 1;
      while (conv_transpose_out(h, k, st, pads, d, op) < 1) ++h;
      return h;
    };
    c.H = smallest(c.kH, c.a.stride.h, p.rows(), c.a.dilation.h, c.a.output_padding.h) +
          s.integer(0, 3);
    c.W = smallest(c.kW, c.a.stride.w, p.columns(), c.a.dilation.w, c.a.output_padding.w) +
          s.integer(0, 3);
  } else {
    c.H = std::max<int64_t>(1, c.a.dilation.h * (c.kH - 1) + 1 - p.rows()) + s.integer(0, 4);
    c.W = std::max<int64_t>(1, c.a.dilation.w * (c.kW - 1) + 1 - p.columns()) + s.integer(0, 4);
  }
  return c;
}

AttrMap conv_attr_map(const ConvAttrs& a, bool transposed) {
  AttrMap m{{"stride", Ints{a.stride.h, a.stride.w}},
            {"padding", a.padding},
            {"dilation", Ints{a.dilation.h, a.dilation.w}},
            {"groups", a.groups}};
  if (transposed) m.push_back({"output_padding", Ints{a.output_padding.h, a.output_padding.w}});
  return m;
}

OpSample sample_conv(Sampler& s, bool transposed) {
  const SampledConv c = sample_conv_config(s, transposed);
  const Shape w =
      transposed ? Shape{c.C, c.O / c.G, c.kH, c.kW} : Shape{c.O, c.C / c.G, c.kH, c.kW};
  OpSample sample{
      {s.smooth({c.N, c.C, c.H, c.W}), s.smooth(w)}, conv_attr_map(c.a, transposed), {true, false}};
  if (s.boolean()) {
    sample.inputs.push_back(s.smooth({c.O}));
    sample.batched.push_back(false);
  }
  return sample;
}

// ---- conv2d -----------------------------------------------------------------------------------

std::vector<Tensor> conv2d_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Output y(specs[0]);
  dispatch_float(specs[0].dtype, [&](auto t) {
    conv2d_forward<decltype(t)>(c.input(0), c.input(1), optional_input(c, 2),
                                conv_attrs(c.attrs, false, kernel_of(c.input(1).shape())), y);
  });
  return std::vector<Tensor>{y.take()};
}

OpSample conv2d_sample(Sampler& s) { return sample_conv(s, false); }

OpDef conv2d_def() {
  return {
      .name = "conv2d",
      .summary = "cross-correlation: x [N,C,H,W], w [O,C/groups,kH,kW], b [O] -> [N,O,Ho,Wo]",
      .inputs = {{"x"}, {"w"}, {"b", InputKind::floating, true}},
      .attrs = conv_attr_specs(false),
      .shape = conv2d_shape,
      .forward = conv2d_kernel,
      .vjp = conv2d_vjp,
      .vjp_formula =
          "dx = conv_transpose2d(g, w), dw = conv2d_weight_grad(x, g), db = sum_{n,h,w} g",
      .vjp_reads_outputs = false,
      .jvp = bilinear_jvp,
      .jvp_formula = "dy = conv2d(tx, w) + conv2d(x, tw) + tb",
      .label = conv_label(1, 2),
      .sample = conv2d_sample,
  };
}

// ---- conv_transpose2d -------------------------------------------------------------------------

std::vector<Tensor> conv_transpose2d_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Output y(specs[0]);
  dispatch_float(specs[0].dtype, [&](auto t) {
    conv_transpose2d_forward<decltype(t)>(c.input(0), c.input(1), optional_input(c, 2),
                                          conv_attrs(c.attrs, true, kernel_of(c.input(1).shape())),
                                          y);
  });
  return std::vector<Tensor>{y.take()};
}

OpSample conv_transpose2d_sample(Sampler& s) { return sample_conv(s, true); }

OpDef conv_transpose2d_def() {
  return {
      .name = "conv_transpose2d",
      .summary = "the adjoint of conv2d in its input: x [N,C,H,W], w [C,O/groups,kH,kW], b [O]",
      .inputs = {{"x"}, {"w"}, {"b", InputKind::floating, true}},
      .attrs = conv_attr_specs(true),
      .shape = conv_transpose2d_shape,
      .forward = conv_transpose2d_kernel,
      .vjp = conv_transpose2d_vjp,
      .vjp_formula = "dx = conv2d(g, w), dw = conv2d_weight_grad(g, x), db = sum_{n,h,w} g",
      .vjp_reads_outputs = false,
      .jvp = bilinear_jvp,
      .jvp_formula = "dy = conv_transpose2d(tx, w) + conv_transpose2d(x, tw) + tb",
      .label = conv_label(1, 2),
      .sample = conv_transpose2d_sample,
  };
}

// ---- conv2d_weight_grad -----------------------------------------------------------------------

std::vector<Tensor> conv2d_weight_grad_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Output gw(specs[0]);
  dispatch_float(specs[0].dtype, [&](auto t) {
    conv2d_weight_grad_forward<decltype(t)>(
        c.input(0), c.input(1), conv_attrs(c.attrs, false, c.attrs.pair("kernel_size")), gw);
  });
  return std::vector<Tensor>{gw.take()};
}

OpSample conv2d_weight_grad_sample(Sampler& s) {
  const SampledConv c = sample_conv_config(s, false);
  const Padding p = c.a.padding.resolved({c.kH, c.kW}, c.a.dilation);
  const int64_t Ho = conv_out(c.H, c.kH, c.a.stride.h, p.rows(), c.a.dilation.h);
  const int64_t Wo = conv_out(c.W, c.kW, c.a.stride.w, p.columns(), c.a.dilation.w);
  AttrMap attrs = conv_attr_map(c.a, false);
  attrs.push_back({"kernel_size", Ints{c.kH, c.kW}});
  return OpSample{{s.smooth({c.N, c.C, c.H, c.W}), s.smooth({c.N, c.O, Ho, Wo})}, attrs};
}

OpDef conv2d_weight_grad_def() {
  std::vector<AttrSpec> weight_grad_attrs = conv_attr_specs(false);
  weight_grad_attrs.insert(weight_grad_attrs.begin(), {"kernel_size", AttrType::pair, std::nullopt,
                                                       "the weight's [kH, kW]", "k"});

  return {
      .name = "conv2d_weight_grad",
      .summary = "dL/dw of conv2d(x, w) for output gradient g: [O, C/groups, kH, kW]",
      .inputs = {{"x"}, {"g"}},
      .attrs = weight_grad_attrs,
      .shape = weight_grad_shape,
      .forward = conv2d_weight_grad_kernel,
      .vjp = weight_grad_vjp,
      .vjp_formula = "dx = conv_transpose2d(g, gw_bar), dg = conv2d(x, gw_bar)",
      .vjp_reads_outputs = false,
      .jvp = bilinear_jvp,
      .jvp_formula = "dy = conv2d_weight_grad(tx, g) + conv2d_weight_grad(x, tg)",
      .sample = conv2d_weight_grad_sample,
  };
}

// ---- conv1x1 ----------------------------------------------------------------------------------

std::vector<TensorSpec> conv1x1_shape(const OpCall& c) {
  check_image(c, 0);
  expect_rank(c, 1, 4, "[O,C,1,1]");
  const Shape &x = c.input(0).shape(), &w = c.input(1).shape();
  if (w[2] != 1 || w[3] != 1) shape_fail(c, "w must be [O,C,1,1], got {}", w);
  if (x[1] != w[1])
    shape_fail(c, "x has {} channels but w {} expects {} (w.shape[1])", x[1], w, w[1]);
  check_bias(c, w[0]);
  return std::vector<TensorSpec>{{{x[0], w[0], x[2], x[3]}, c.input(0).dtype()}};
}

std::vector<Tensor> conv1x1_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Output y(specs[0]);
  const ConvAttrs pointwise{
      .stride = 1, .padding = 0, .dilation = 1, .output_padding = 0, .groups = 1};
  dispatch_float(specs[0].dtype, [&](auto t) {
    conv2d_forward<decltype(t)>(c.input(0), c.input(1), optional_input(c, 2), pointwise, y);
  });
  return std::vector<Tensor>{y.take()};
}

std::vector<Var> conv1x1_vjp(const VjpContext& c) {
  const Var &x = c.input(0), &w = c.input(1), &g = c.grad_output(0);
  Var dx, dw, db;  // the small gradients first, as in conv2d_vjp
  if (c.needs(2)) db = bias_grad(g);
  if (c.needs(1)) dw = conv2d_weight_grad(x, g, {1, 1});
  if (c.needs(0)) dx = conv1x1(g, permute(w, {1, 0, 2, 3}));
  return {dx, dw, db};
}

OpSample conv1x1_sample(Sampler& s) {
  const int64_t N = s.integer(1, 2), C = s.integer(1, 4), O = s.integer(1, 4);
  const Shape x{N, C, s.integer(1, 4), s.integer(1, 4)};
  OpSample sample{{s.smooth(x), s.smooth({O, C, 1, 1})}, {}, {true, false}};
  if (s.boolean()) {
    sample.inputs.push_back(s.smooth({O}));
    sample.batched.push_back(false);
  }
  return sample;
}

OpDef conv1x1_def() {
  return {
      .name = "conv1x1",
      .summary = "per-pixel fully connected layer: x [N,C,H,W], w [O,C,1,1], b [O] -> [N,O,H,W]",
      .inputs = {{"x"}, {"w"}, {"b", InputKind::floating, true}},
      .shape = conv1x1_shape,
      .forward = conv1x1_kernel,
      .vjp = conv1x1_vjp,
      .vjp_formula = "dx = conv1x1(g, w^T), dw = conv2d_weight_grad(x, g), db = sum_{n,h,w} g",
      .vjp_reads_outputs = false,
      .jvp = bilinear_jvp,
      .jvp_formula = "dy = conv1x1(tx, w) + conv1x1(x, tw) + tb",
      .sample = conv1x1_sample,
  };
}

}  // namespace

void register_conv_ops() {
  register_builtin(conv2d_def());
  register_builtin(conv_transpose2d_def());
  register_builtin(conv2d_weight_grad_def());
  register_builtin(conv1x1_def());
}

namespace {
Attrs conv2d_attrs(const OpDef& op, const Conv2dOptions& o) {
  return Attrs(op, {{"stride", o.stride},
                    {"padding", o.padding},
                    {"dilation", o.dilation},
                    {"groups", o.groups}});
}
Attrs conv_transpose2d_attrs(const OpDef& op, const ConvTranspose2dOptions& o) {
  return Attrs(op, {{"stride", o.stride},
                    {"padding", o.padding},
                    {"output_padding", o.output_padding},
                    {"dilation", o.dilation},
                    {"groups", o.groups}});
}
}  // namespace

Var conv2d(const Var& x, const Var& w, Conv2dOptions o, Loc loc) {
  static const OpDef& op = builtin("conv2d");
  return call_op(op, {x, w}, conv2d_attrs(op, o), loc);
}
Var conv2d(const Var& x, const Var& w, const Var& b, Conv2dOptions o, Loc loc) {
  static const OpDef& op = builtin("conv2d");
  return call_op(op, {x, w, b}, conv2d_attrs(op, o), loc);
}
Var conv2d_weight_grad(const Var& x, const Var& g, Pair k, Conv2dOptions o, Loc loc) {
  static const OpDef& op = builtin("conv2d_weight_grad");
  return call_op(op, {x, g},
                 Attrs(op, {{"kernel_size", k},
                            {"stride", o.stride},
                            {"padding", o.padding},
                            {"dilation", o.dilation},
                            {"groups", o.groups}}),
                 loc);
}
Var conv_transpose2d(const Var& x, const Var& w, ConvTranspose2dOptions o, Loc loc) {
  static const OpDef& op = builtin("conv_transpose2d");
  return call_op(op, {x, w}, conv_transpose2d_attrs(op, o), loc);
}
Var conv_transpose2d(const Var& x, const Var& w, const Var& b, ConvTranspose2dOptions o, Loc loc) {
  static const OpDef& op = builtin("conv_transpose2d");
  return call_op(op, {x, w, b}, conv_transpose2d_attrs(op, o), loc);
}
Var conv1x1(const Var& x, const Var& w, Loc loc) {
  static const OpDef& op = builtin("conv1x1");
  return call_op(op, {x, w}, loc);
}
Var conv1x1(const Var& x, const Var& w, const Var& b, Loc loc) {
  static const OpDef& op = builtin("conv1x1");
  return call_op(op, {x, w, b}, loc);
}

}  // namespace dg
