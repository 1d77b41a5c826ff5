// The softmax family: softmax and log_softmax over axis 1, one_hot, and the fused, numerically
// stable softmax_xent (softmax + cross-entropy) with class-index or probability labels.
//
// Stability: every exp is of z - max_c z <= 0, and log(sum exp) is taken of a sum >= 1, so
// logits of any magnitude give finite results.
#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {

// A tensor [a..., C, b...] with the class axis at `axis` (1: [N, C, d...]) seen as N x C x S:
// N the product of the axes before it, S of those after it (the class axis is strided by S).
struct ClassLayout {
  int64_t N, C, S;
};
ClassLayout class_layout(const Shape& s, int axis = 1) {
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (int d = axis + 1; d < s.size(); ++d) inner *= s[d];
  return {outer, s[axis], inner};
}

// Shape without the class axis: [N, d...].
Shape element_shape(const Shape& s) {
  Shape out{s[0]};
  for (int d = 2; d < s.size(); ++d) out.push_back(s[d]);
  return out;
}
// Shape with a class axis of size 1: [N, 1, d...].
Shape with_unit_class_axis(const Shape& s) {
  Shape out = s;
  out[1] = 1;
  return out;
}

// lse[n, s] = log(sum_c exp(z[n, c, s])) for every element, computed as m + log(sum exp(z - m))
// with m = max_c z. Vectorised across what is contiguous: the classes of a row when there are
// no pixels (S = 1), else a block of pixels of one image at a time, so that each exp and log
// runs on whole SIMD registers (Eigen's). Where m is not finite (all -inf, or an +inf), the
// stable form does not apply and lse = m.
template <class T>
T non_finite_lse(const T* z, int64_t C, int64_t stride, T m) {
  for (int64_t c = 0; c < C; ++c)
    if (std::isnan(z[c * stride])) return z[c * stride];  // NaN propagates
  return m;
}

// Per-element log-sum-exps, in a buffer aligned like tensor storage (64 bytes). Eigen peels
// scalar iterations until a destination is aligned, and its scalar exp and log round differently
// from its vector ones: with malloc's varying alignment, the same softmax could differ in the last
// bit from one call to the next.
template <class T>
using LseBuffer = std::vector<T, Eigen::aligned_allocator<T>>;

template <class T>
LseBuffer<T> log_sum_exp(const T* z, const ClassLayout& L) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  using ConstMap = Eigen::Map<const Array>;
  LseBuffer<T> lse(static_cast<size_t>(L.N * L.S));
  if (L.S == 1) {
    kernels::parallel_for(L.N, 3 * L.C, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        const ConstMap row(z + n * L.C, L.C);
        const T m = row.maxCoeff();
        lse[n] = std::isfinite(m) ? m + std::log((row - m).exp().sum())
                                  : non_finite_lse(z + n * L.C, L.C, 1, m);
      }
    });
    return lse;
  }
  constexpr int64_t block = 256;
  const int64_t blocks_per_image = (L.S + block - 1) / block;
  kernels::parallel_for(L.N * blocks_per_image, 3 * L.C * block, [&](int64_t b0, int64_t b1) {
    Array m(block), total(block);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n = b / blocks_per_image, s0 = (b % blocks_per_image) * block;
      const int64_t len = std::min(block, L.S - s0);
      const T* zn = z + n * L.C * L.S + s0;
      auto mb = m.head(len);
      auto tb = total.head(len);
      mb = ConstMap(zn, len);
      for (int64_t c = 1; c < L.C; ++c) mb = mb.max(ConstMap(zn + c * L.S, len));
      tb.setZero();
      for (int64_t c = 0; c < L.C; ++c) tb += (ConstMap(zn + c * L.S, len) - mb).exp();
      T* out = lse.data() + n * L.S + s0;
      Eigen::Map<Array>(out, len) = mb + tb.log();
      for (int64_t i = 0; i < len; ++i)
        if (!std::isfinite(mb[i])) out[i] = non_finite_lse(zn + i, L.C, L.S, mb[i]);
    }
  });
  return lse;
}

// Calls row(n, c, lse_row, z_row, len, offset) over stretches of one class of one image: z_row
// (len values) are z[n, c, s0 .. s0+len), lse_row the matching lse values, offset = the flat
// index of z_row[0]. Split over images and classes.
template <class T, class Row>
void for_each_class_row(const T* z, const ClassLayout& L, const LseBuffer<T>& lse, Row row) {
  if (L.S == 1) {
    kernels::parallel_for(L.N, 2 * L.C, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) row(n, int64_t{-1}, lse[n], z + n * L.C, L.C, n * L.C);
    });
    return;
  }
  kernels::parallel_for(L.N * L.C, 2 * L.S, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / L.C, c = r % L.C;
      row(n, c, T(0), z + r * L.S, L.S, r * L.S);
    }
  });
}

// y = softmax(x) or log_softmax(x) over `axis`: exp(z - lse) or z - lse.
template <class T>
void softmax_forward(const Tensor& x, Tensor& y, bool log, int axis) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const ClassLayout L = class_layout(x.shape(), axis);
  const T* px = x.data<T>();
  T* py = y.data<T>();
  const LseBuffer<T> lse = log_sum_exp(px, L);
  for_each_class_row<T>(
      px, L, lse, [&](int64_t n, int64_t, T row_lse, const T* zr, int64_t len, int64_t offset) {
        const Eigen::Map<const Array> zv(zr, len);
        Eigen::Map<Array> out(py + offset, len);
        if (L.S == 1) {
          out = log ? (zv - row_lse).eval() : (zv - row_lse).exp().eval();
        } else {
          const Eigen::Map<const Array> l(lse.data() + n * L.S, len);
          out = log ? (zv - l).eval() : (zv - l).exp().eval();
        }
      });
}

// dz = (softmax(z) - onehot(label)) * seed per element, 0 where label == ignore_index: the
// gradient of the per-element class-label cross-entropies weighted by seed [N, d...].
template <class T>
void xent_backward(const Tensor& z, const Tensor& labels, const Tensor& seed, int64_t ignore_index,
                   Tensor& dz) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  const ClassLayout L = class_layout(z.shape());
  const T* pz = z.data<T>();
  const T* ps = seed.data<T>();
  const int64_t* pl = labels.data<int64_t>();
  T* out = dz.data<T>();
  const LseBuffer<T> lse = log_sum_exp(pz, L);
  for_each_class_row<T>(
      pz, L, lse, [&](int64_t n, int64_t c, T row_lse, const T* zr, int64_t len, int64_t offset) {
        const Eigen::Map<const Array> zv(zr, len);
        Eigen::Map<Array> o(out + offset, len);
        if (L.S == 1) {  // one element: the row is its classes
          const int64_t label = pl[n];
          if (label == ignore_index) {
            o.setZero();
            return;
          }
          o = (zv - row_lse).exp() * ps[n];
          if (label >= 0 && label < L.C) o[label] -= ps[n];
          return;
        }
        // One class c over the pixels of image n.
        const Eigen::Map<const Array> l(lse.data() + n * L.S, len), sd(ps + n * L.S, len);
        o = (zv - l).exp() * sd;
        const int64_t* ln = pl + n * L.S;
        for (int64_t i = 0; i < len; ++i) {
          if (ln[i] == c) o[i] -= sd[i];
          if (ln[i] == ignore_index) o[i] = T(0);
        }
      });
}

bool is_class_labels(const Tensor& labels) { return labels.dtype() == DType::i64; }

// Per-element losses l = lse - z[label] (class labels) or sum_c t_c (lse - z_c) (probabilities).
template <class T>
void xent_forward(const Tensor& logits, const Tensor& labels, int64_t ignore_index,
                  Tensor& losses) {
  const ClassLayout L = class_layout(logits.shape());
  const T* pz = logits.data<T>();
  T* pl = losses.data<T>();
  const bool classes = is_class_labels(labels);
  const int64_t* pc = classes ? labels.data<int64_t>() : nullptr;
  const T* pt = classes ? nullptr : labels.data<T>();
  const LseBuffer<T> lse = log_sum_exp(pz, L);
  kernels::parallel_for(L.N * L.S, 2 * L.C, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t n = k / L.S, s = k % L.S;
      const T* z = pz + n * L.C * L.S + s;
      if (classes) {
        const int64_t label = pc[k];
        pl[k] = label == ignore_index ? T(0) : lse[k] - z[label * L.S];
      } else {
        const T* t = pt + n * L.C * L.S + s;
        T total = 0;
        for (int64_t c = 0; c < L.C; ++c) total += t[c * L.S] * (lse[k] - z[c * L.S]);
        pl[k] = total;
      }
    }
  });
}

// Number of per-element losses that count: all of them, less the ignored class labels.
int64_t counted_elements(const Tensor& labels, int64_t ignore_index) {
  if (!is_class_labels(labels)) return labels.numel() / std::max<int64_t>(labels.shape()[1], 1);
  int64_t n = 0;
  for (int64_t v : labels.values<int64_t>()) n += v != ignore_index;
  return n;
}

// 1 where a class label counts, 0 where it equals ignore_index (as a float tensor).
Tensor valid_mask(const Tensor& labels, int64_t ignore_index, DType dtype) {
  Tensor mask(labels.shape(), dtype);
  dispatch_float(dtype, [&](auto t) {
    using T = decltype(t);
    const int64_t* pl = labels.data<int64_t>();
    T* pm = mask.data<T>();
    for (int64_t i = 0; i < labels.numel(); ++i) pm[i] = pl[i] == ignore_index ? T(0) : T(1);
  });
  return mask;
}

// ---- class weights and label smoothing ---------------------------------------------------------
// With a weight [C] or label_smoothing e > 0 (F.cross_entropy's semantics), every variant is a
// soft-target cross-entropy with fixed coefficients T [N, C, d...]:
//   loss_i = sum_c T_ic (lse_i - z_ic),  the reduced loss = sum_i loss_i
// where the mean's divisors are folded into T:
//   class labels y:   T_ic = (1-e) w_y [c = y] / D1 + (e/C) w_c / D2    (0 where y is ignored)
//                     mean: D1 = D2 = the sum of w_y over the counted elements (the number of
//                     counted elements without a weight); sum and none: D1 = D2 = 1
//   probabilities t:  T_ic = w_c ((1-e) t_ic + e/C) / D,  D = elements for the mean, else 1
// (w = 1 without a weight). Then dz = s (softmax(z) sum_c T - T) and, for probabilities,
// dt = -s (1-e) w_c log_softmax(z) / D, with s the seed of each element's loss.

// No weight and no smoothing: the fused class-label path (an OpCall or a VjpContext).
template <class Call>
bool plain_xent(const Call& c) {
  return !c.has_input(2) && c.attrs.real("label_smoothing") == 0.0;
}

// The divisor of the mean for probability labels: the number of elements.
double probability_divisor(const Shape& z, const std::string& reduction) {
  if (reduction != "mean") return 1.0;
  return static_cast<double>(element_shape(z).product());
}

// T for class labels (a constant of z's dtype and shape).
Tensor class_label_coefficients(const Shape& z_shape, DType dtype, const Tensor& labels,
                                const Tensor* weight, double e, int64_t ignore,
                                const std::string& reduction) {
  const ClassLayout L = class_layout(z_shape);
  std::vector<double> w(L.C, 1.0);
  if (weight)
    for (int64_t k = 0; k < L.C; ++k) w[k] = weight->at(k);
  const int64_t* y = labels.data<int64_t>();
  const int64_t elements = L.N * L.S;
  double d1 = 1, d2 = 1;  // the divisors of the label and the smoothing terms
  if (reduction == "mean") {
    double counted = 0, weights = 0;
    for (int64_t i = 0; i < elements; ++i)
      if (y[i] != ignore) {
        counted += 1;
        weights += w[y[i]];
      }
    d1 = d2 = weight ? weights : counted;
  }
  Tensor t = Tensor::zeros(z_shape, DType::f64);
  double* pt = t.data<double>();
  for (int64_t i = 0; i < elements; ++i) {
    if (y[i] == ignore) continue;
    const int64_t n = i / L.S, s = i % L.S;
    double* row = pt + n * L.C * L.S + s;
    for (int64_t k = 0; k < L.C; ++k) row[k * L.S] = e / static_cast<double>(L.C) * w[k] / d2;
    row[y[i] * L.S] += (1 - e) * w[y[i]] / d1;
  }
  return dtype == DType::f64 ? t : t.to(dtype);
}

// T for probability labels, as a tensor (forward) from t, w, e and the divisor.
Tensor probability_coefficients(const Tensor& t, const Tensor* weight, double e, double divisor) {
  const ClassLayout L = class_layout(t.shape());
  Tensor out = t.to(DType::f64).clone();
  double* p = out.data<double>();
  for (int64_t k = 0; k < out.numel(); ++k) {
    const int64_t c = (k / L.S) % L.C;
    const double w = weight ? weight->at(c) : 1.0;
    p[k] = w * ((1 - e) * p[k] + e / static_cast<double>(L.C)) / divisor;
  }
  return t.dtype() == DType::f64 ? out : out.to(t.dtype());
}

Tensor coefficients(const OpCall& c) {
  const Tensor &z = c.input(0), &labels = c.input(1);
  const Tensor* weight = c.has_input(2) ? &c.input(2) : nullptr;
  const double e = c.attrs.real("label_smoothing");
  const std::string& reduction = c.attrs.string("reduction");
  if (is_class_labels(labels))
    return class_label_coefficients(z.shape(), z.dtype(), labels, weight, e,
                                    c.attrs.integer("ignore_index"), reduction);
  return probability_coefficients(labels, weight, e, probability_divisor(z.shape(), reduction));
}

// Per-element losses sum_c T_ic (lse_i - z_ic): the soft-target forward with coefficients T.
template <class T>
void weighted_xent_forward(const Tensor& logits, const Tensor& coeffs, Tensor& losses) {
  const ClassLayout L = class_layout(logits.shape());
  const T *pz = logits.data<T>(), *pc = coeffs.data<T>();
  T* pl = losses.data<T>();
  const LseBuffer<T> lse = log_sum_exp(pz, L);
  kernels::parallel_for(L.N * L.S, 2 * L.C, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t n = k / L.S, s = k % L.S;
      const T* z = pz + n * L.C * L.S + s;
      const T* t = pc + n * L.C * L.S + s;
      T total = 0;
      for (int64_t c = 0; c < L.C; ++c)
        if (t[c * L.S] != T(0)) total += t[c * L.S] * (lse[k] - z[c * L.S]);
      pl[k] = total;
    }
  });
}

// The VJP of the weighted or smoothed forms (see above), written with registered ops.
std::vector<Var> weighted_xent_vjp(const VjpContext& c) {
  const Var &z = c.input(0), &labels = c.input(1), &g = c.grad_output(0);
  const std::string& reduction = c.attrs.string("reduction");
  const double e = c.attrs.real("label_smoothing");
  const Shape elements = element_shape(z.shape()), unit = with_unit_class_axis(z.shape());
  const int64_t C = z.shape()[1];
  // s: the seed of each element's loss (the mean's divisors are inside T).
  const Var s =
      reshape(reduction == "none" ? g : broadcast_to(reshape(g, Shape{}), elements), unit);
  Shape class_axis;  // [1, C, 1, ...]: the weights along the class axis
  for (int d = 0; d < z.dim(); ++d) class_axis.push_back(d == 1 ? C : 1);
  const Var w = c.has_input(2) ? reshape(Var(c.input(2).value()), class_axis) : Var();
  const double divisor = probability_divisor(z.shape(), reduction);
  Var t;
  if (is_class_labels(labels.value())) {
    const Tensor* weight = c.has_input(2) ? &c.input(2).value() : nullptr;
    t = Var(class_label_coefficients(z.shape(), z.dtype(), labels.value(), weight, e,
                                     c.attrs.integer("ignore_index"), reduction));
  } else {
    t = mul_scalar(add_scalar(mul_scalar(labels, 1 - e), e / static_cast<double>(C)), 1 / divisor);
    if (w.defined()) t = mul(t, w);
  }
  Var dz, dt;
  if (c.needs(0)) dz = mul(sub(mul(softmax(z), sum(t, {.axes = {1}, .keepdims = true})), t), s);
  if (c.needs(1) && !is_class_labels(labels.value())) {
    dt = mul(mul_scalar(log_softmax(z), -(1 - e) / divisor), s);
    if (w.defined()) dt = mul(dt, w);
  }
  return {dz, dt, Var()};
}

std::vector<Var> xent_vjp(const VjpContext& c) {
  if (!plain_xent(c)) return weighted_xent_vjp(c);
  const Var &z = c.input(0), &labels = c.input(1), &g = c.grad_output(0);
  const std::string& reduction = c.attrs.string("reduction");
  const int64_t ignore_index = c.attrs.integer("ignore_index");
  const Shape elements = element_shape(z.shape());
  const bool classes = is_class_labels(labels.value());
  // s: the seed of each per-element loss.
  Var s = reduction == "none" ? g : broadcast_to(reshape(g, Shape{}), elements);
  if (reduction == "mean") {
    const int64_t count = counted_elements(labels.value(), ignore_index);
    s = mul_scalar(s, count ? 1.0 / static_cast<double>(count) : std::nan(""));
  }
  if (classes) {
    // One fused pass; it zeroes the ignored elements itself.
    if (!c.needs(0)) return {Var(), Var()};
    return {softmax_xent_backward(z, labels, s, ignore_index), Var()};
  }
  const Var seed = reshape(s, with_unit_class_axis(z.shape()));
  Var dz, dt;
  if (c.needs(0))
    dz = mul(sub(mul(softmax(z), sum(labels, {.axes = {1}, .keepdims = true})), labels), seed);
  if (c.needs(1)) dt = neg(mul(seed, log_softmax(z)));
  return {dz, dt};
}

// logits [N,C,d1,...] of rank 2 to 5 for the property tests.
Shape sample_class_shape(Sampler& s) {
  Shape shape{s.integer(1, 3), s.integer(1, 4)};
  const int64_t extra = s.integer(0, 3);
  for (int64_t d = 0; d < extra; ++d) shape.push_back(s.integer(1, 3));
  return shape;
}

// Rank 1 to 4, over a random axis (written negative half of the time); separable over the batch
// unless the batch axis itself is normalised, so the draws start (and shrink) at axis 1.
OpSample sample_softmax(Sampler& s) {
  const Shape shape = sample_shape(s, 1, 4);
  const int64_t rank = shape.size(), d = (s.integer(0, rank - 1) + 1) % rank;
  return OpSample{{s.smooth(shape)},
                  {{"axis", s.boolean() ? d : d - rank}},
                  d != 0 && rank > 1 ? all_batched(1) : std::vector<bool>{}};
}

// The VJP of softmax_xent_backward, dz = v * (y - onehot) with y = softmax(z) and v = seed
// where the label counts (0 where ignored), for an upstream gradient gbar of dz's shape:
//   d z    = y * (u - sum_c(y * u)),  u = gbar * v   (softmax's VJP applied to u)
//   d seed = sum_c((y - onehot) * gbar) where the label counts
std::vector<Var> xent_backward_vjp(const VjpContext& c) {
  const Var &z = c.input(0), &labels = c.input(1), &seed = c.input(2), &gbar = c.grad_output(0);
  const int64_t ignore_index = c.attrs.integer("ignore_index");
  const Shape unit = with_unit_class_axis(z.shape());
  const bool some_ignored = counted_elements(labels.value(), ignore_index) != labels.numel();
  const Var valid = some_ignored ? Var(valid_mask(labels.value(), ignore_index, z.dtype())) : Var();
  const Var y = softmax(z);
  Var dz, dseed;
  if (c.needs(0)) {
    const Var v = some_ignored ? mul(seed, valid) : seed;
    const Var u = mul(gbar, reshape(v, unit));
    dz = mul(y, sub(u, sum(mul(y, u), {.axes = {1}, .keepdims = true})));
  }
  if (c.needs(2)) {
    const Var t = one_hot(labels, z.shape()[1], z.dtype() == DType::f64);
    dseed = sum(mul(sub(y, t), gbar), {.axes = {1}});
    if (some_ignored) dseed = mul(dseed, valid);
  }
  return {dz, Var(), dseed};
}

// ---- softmax, log_softmax ---------------------------------------------------------------------
// The two share their shape rule and kernel (log picks the output form).

// The normalised axis, resolved against x's rank (negative counts from the end).
int softmax_axis(const OpCall& c) {
  const int64_t axis = c.attrs.integer("axis"), rank = c.input(0).dim();
  const int64_t d = axis < 0 ? axis + rank : axis;
  if (d < 0 || d >= rank)
    shape_fail(c, "axis {} is out of range for x of shape {} (rank {})", axis, c.input(0).shape(),
               rank);
  return static_cast<int>(d);
}

std::vector<TensorSpec> softmax_shape(const OpCall& c) {
  softmax_axis(c);
  return same_as_input(c);
}

template <bool log>
std::vector<Tensor> softmax_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor y(specs[0].shape, specs[0].dtype);
  const int axis = softmax_axis(c);
  dispatch_float(y.dtype(),
                 [&](auto t) { softmax_forward<decltype(t)>(c.input(0), y, log, axis); });
  return std::vector<Tensor>{y};
}

std::vector<Var> softmax_vjp(const VjpContext& c) {
  const Var &y = c.output(0), &g = c.grad_output(0);
  const int64_t axis = c.attrs.integer("axis");
  return {mul(y, sub(g, sum(mul(y, g), {.axes = {axis}, .keepdims = true})))};
}

std::vector<Var> log_softmax_vjp(const VjpContext& c) {
  const Var& g = c.grad_output(0);
  const int64_t axis = c.attrs.integer("axis");
  return {sub(g, mul(softmax(c.input(0), axis), sum(g, {.axes = {axis}, .keepdims = true})))};
}

AttrSpec softmax_axis_attr() {
  return {"axis", AttrType::integer, AttrValue(int64_t{1}),
          "the axis normalised over; negative counts from the end", "axis="};
}

OpDef softmax_def() {
  return {
      .name = "softmax",
      .summary = "exp(x) / sum exp(x) over one axis (the classes, axis 1, by default)",
      .inputs = {{"x"}},
      .attrs = {softmax_axis_attr()},
      .shape = softmax_shape,
      .forward = softmax_kernel<false>,
      .vjp = softmax_vjp,
      .vjp_formula = "dx = y * (g - sum_axis(y * g))",
      .sample = sample_softmax,
  };
}

OpDef log_softmax_def() {
  return {
      .name = "log_softmax",
      .summary = "x - log(sum exp(x)) over one axis (the classes, axis 1, by default)",
      .inputs = {{"x"}},
      .attrs = {softmax_axis_attr()},
      .shape = softmax_shape,
      .forward = softmax_kernel<true>,
      .vjp = log_softmax_vjp,
      .vjp_formula = "dx = g - softmax(x, axis) * sum_axis(g)",
      .sample = sample_softmax,
  };
}

// ---- one_hot ----------------------------------------------------------------------------------

std::vector<TensorSpec> one_hot_shape(const OpCall& c) {
  const Shape& l = c.input(0).shape();
  const int64_t C = c.attrs.integer("num_classes");
  if (l.size() < 1) shape_fail(c, "labels must have a batch axis, got a scalar");
  if (C < 1) shape_fail(c, "num_classes must be at least 1, got {}", C);
  Shape out{l[0], C};
  for (int d = 1; d < l.size(); ++d) out.push_back(l[d]);
  return std::vector<TensorSpec>{{out, c.attrs.boolean("float64") ? DType::f64 : DType::f32}};
}

std::vector<Tensor> one_hot_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor y = Tensor::zeros(specs[0].shape, specs[0].dtype);
  const ClassLayout L = class_layout(y.shape());
  const int64_t* pl = c.input(0).data<int64_t>();
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    T* py = y.data<T>();
    for (int64_t k = 0; k < L.N * L.S; ++k) {
      const int64_t label = pl[k];
      if (label >= 0 && label < L.C) py[(k / L.S) * L.C * L.S + label * L.S + k % L.S] = T(1);
    }
  });
  return std::vector<Tensor>{y};
}

OpSample one_hot_sample(Sampler& s) {
  const Shape l = sample_shape(s, 1, 3);
  const int64_t classes = s.integer(1, 4);
  return OpSample{{s.indices(l, classes + 1)},
                  {{"num_classes", classes}, {"float64", s.dtype() == DType::f64}},
                  all_batched(1)};
}

OpDef one_hot_def() {
  return {
      .name = "one_hot",
      .summary =
          "int64 labels [N, d...] -> [N, C, d...] with 1 at each label (labels outside [0, "
          "C) give 0s)",
      .inputs = {{"labels", InputKind::int64}},
      .attrs = {{"num_classes", AttrType::integer, std::nullopt, "C"},
                {"float64", AttrType::boolean, AttrValue(false),
                 "float64 output instead of float32"}},
      .shape = one_hot_shape,
      .forward = one_hot_kernel,
      .sample = one_hot_sample,
  };
}

// ---- softmax_xent -----------------------------------------------------------------------------

std::vector<TensorSpec> softmax_xent_shape(const OpCall& c) {
  const Tensor &z = c.input(0), &labels = c.input(1);
  if (z.dim() < 2) shape_fail(c, "logits must be [N,C,d1,...] (rank >= 2), got {}", z.shape());
  const std::string& reduction = c.attrs.string("reduction");
  const double e = c.attrs.real("label_smoothing");
  if (!(e >= 0 && e <= 1)) shape_fail(c, "label_smoothing must be in [0, 1], got {}", e);
  if (c.has_input(2) && !(c.input(2).shape() == Shape{z.shape()[1]}))
    shape_fail(c, "weight must be [C] = [{}] (one weight per class of logits {}), got {}",
               z.shape()[1], z.shape(), c.input(2).shape());
  if (reduction != "mean" && reduction != "sum" && reduction != "none")
    shape_fail(c, "reduction must be \"mean\", \"sum\" or \"none\", got \"{}\"", reduction);
  const Shape elements = element_shape(z.shape());
  if (is_class_labels(labels)) {
    if (!(labels.shape() == elements))
      shape_fail(c,
                 "class labels are {} but logits {} need labels {} (the logits without "
                 "the class axis 1)",
                 labels.shape(), z.shape(), elements);
    const int64_t C = z.shape()[1], ignore = c.attrs.integer("ignore_index");
    const int64_t* pl = labels.data<int64_t>();
    for (int64_t i = 0; i < labels.numel(); ++i)
      if ((pl[i] < 0 || pl[i] >= C) && pl[i] != ignore)
        shape_fail(c, "labels{} = {} is not a class in [0, {}) nor ignore_index ({})",
                   multi_index(labels.shape(), i), pl[i], C, ignore);
  } else {
    if (!(labels.shape() == z.shape()))
      shape_fail(c, "probability labels are {} but logits are {}; they must match", labels.shape(),
                 z.shape());
    if (labels.dtype() != z.dtype())
      shape_fail(c, "probability labels are {} but logits are {}", labels.dtype(), z.dtype());
  }
  return std::vector<TensorSpec>{{reduction == "none" ? elements : Shape{}, z.dtype()}};
}

std::vector<Tensor> softmax_xent_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor &z = c.input(0), &labels = c.input(1);
  const int64_t ignore = c.attrs.integer("ignore_index");
  Tensor losses(element_shape(z.shape()), z.dtype());
  const std::string& reduction = c.attrs.string("reduction");
  if (!plain_xent(c)) {
    const Tensor coeffs = coefficients(c);
    dispatch_float(z.dtype(),
                   [&](auto t) { weighted_xent_forward<decltype(t)>(z, coeffs, losses); });
    if (reduction == "none") return std::vector<Tensor>{losses};
    double total = 0;  // the mean's divisors are inside the coefficients
    for (int64_t i = 0; i < losses.numel(); ++i) total += losses.at(i);
    return std::vector<Tensor>{Tensor::full(specs[0].shape, total, z.dtype())};
  }
  dispatch_float(z.dtype(), [&](auto t) { xent_forward<decltype(t)>(z, labels, ignore, losses); });
  if (reduction == "none") return std::vector<Tensor>{losses};
  double total = 0;
  for (int64_t i = 0; i < losses.numel(); ++i) total += losses.at(i);
  if (reduction == "mean") {
    const int64_t count = counted_elements(labels, ignore);
    total = count ? total / static_cast<double>(count) : std::nan("");
  }
  return std::vector<Tensor>{Tensor::full(specs[0].shape, total, z.dtype())};
}

OpSample softmax_xent_sample(Sampler& s) {
  const Shape shape = sample_class_shape(s);
  const std::string reduction = s.choose<const char*>({"mean", "sum", "none"});
  const bool classes = s.boolean();
  Tensor labels;
  if (classes) {
    // Classes in [0, C), with some elements set to ignore_index -1.
    labels = s.indices(element_shape(shape), shape[1] + 1);
    for (int64_t& v : labels.values<int64_t>()) v = v == shape[1] ? -1 : v;
    // A mean over no counted element is 0/0 (NaN, as in PyTorch): keep one counted.
    labels.data<int64_t>()[0] = std::max<int64_t>(labels.data<int64_t>()[0], 0);
  } else {
    Tensor raw = s.positive(shape);
    Tensor normalised = raw.clone();
    const ClassLayout L = class_layout(shape);
    dispatch_float(raw.dtype(), [&](auto t) {
      using T = decltype(t);
      T* p = normalised.data<T>();
      for (int64_t k = 0; k < L.N * L.S; ++k) {
        T total = 0;
        for (int64_t c = 0; c < L.C; ++c) total += p[(k / L.S) * L.C * L.S + c * L.S + k % L.S];
        for (int64_t c = 0; c < L.C; ++c) p[(k / L.S) * L.C * L.S + c * L.S + k % L.S] /= total;
      }
    });
    labels = normalised;
  }
  // Class weights and label smoothing half of the time each (drawn last, shrinking to none).
  const double smoothing = s.choose({0.0, 0.2});
  OpSample sample{
      {s.smooth(shape), labels},
      {{"reduction", reduction}, {"ignore_index", int64_t{-1}}, {"label_smoothing", smoothing}},
      reduction == "none" ? all_batched(2) : std::vector<bool>{}};
  if (s.boolean()) {
    sample.inputs.push_back(s.positive({shape[1]}));
    if (reduction == "none") sample.batched.push_back(false);
  }
  return sample;
}

OpDef softmax_xent_def() {
  return {
      .name = "softmax_xent",
      .summary =
          "fused softmax + cross-entropy over axis 1 of [N,C,d1,...] (class indices or "
          "probabilities; optional class weights and label smoothing, as F.cross_entropy)",
      .inputs = {{"logits"},
                 {"labels", InputKind::float_or_int64},
                 {"weight", InputKind::buffer, /*optional=*/true}},
      .outputs = {{"loss"}},
      .attrs = {{"reduction", AttrType::string, AttrValue("mean"), "\"mean\", \"sum\" or \"none\""},
                {"ignore_index", AttrType::integer, AttrValue(int64_t{-100}),
                 "class label to skip (excluded from the mean)", "ignore="},
                {"label_smoothing", AttrType::real, AttrValue(0.0),
                 "mixes the targets with the uniform distribution: (1-e) t + e/C", "smooth="}},
      .shape = softmax_xent_shape,
      .forward = softmax_xent_kernel,
      .vjp = xent_vjp,
      .vjp_formula =
          "dz = s * (softmax(z) * sum_c T - T), dt = -s * (1-e) * w * log_softmax(z) "
          "(T: the targets, weighted, smoothed and divided for the mean)",
      .vjp_reads_outputs = false,
      .jvp = scalar_output_jvp,
      .jvp_formula =
          "dy = sum(dz * tz) + sum(dt * tt) for one-element losses (the VJP of 1); else the "
          "transposed VJP",
      .sample = softmax_xent_sample,
  };
}

// ---- softmax_xent_backward --------------------------------------------------------------------

std::vector<TensorSpec> softmax_xent_backward_shape(const OpCall& c) {
  const Tensor &z = c.input(0), &labels = c.input(1), &seed = c.input(2);
  if (z.dim() < 2) shape_fail(c, "logits must be [N,C,d1,...] (rank >= 2), got {}", z.shape());
  const Shape elements = element_shape(z.shape());
  if (!(labels.shape() == elements) || !(seed.shape() == elements))
    shape_fail(c, "labels are {} and seed {}, but logits {} need both {}", labels.shape(),
               seed.shape(), z.shape(), elements);
  if (seed.dtype() != z.dtype())
    shape_fail(c, "seed is {} but logits are {}", seed.dtype(), z.dtype());
  return same_as_input(c);
}

std::vector<Tensor> softmax_xent_backward_kernel(const OpCall& c,
                                                 std::span<const TensorSpec> specs) {
  Tensor dz(specs[0].shape, specs[0].dtype);
  dispatch_float(dz.dtype(), [&](auto t) {
    xent_backward<decltype(t)>(c.input(0), c.input(1), c.input(2), c.attrs.integer("ignore_index"),
                               dz);
  });
  return std::vector<Tensor>{dz};
}

OpSample softmax_xent_backward_sample(Sampler& s) {
  const Shape shape = sample_class_shape(s);
  const Shape elements = element_shape(shape);
  // Classes in [0, C), some set to ignore_index -1.
  Tensor labels = s.indices(elements, shape[1] + 1);
  for (int64_t& v : labels.values<int64_t>()) v = v == shape[1] ? -1 : v;
  return OpSample{{s.smooth(shape), labels, s.smooth(elements)},
                  {{"ignore_index", int64_t{-1}}},
                  all_batched(3)};
}

OpDef softmax_xent_backward_def() {
  return {
      .name = "softmax_xent_backward",
      .summary = "d(softmax_xent)/dlogits for class labels: seed * (softmax(z) - onehot(labels))",
      .inputs = {{"logits"}, {"labels", InputKind::int64}, {"seed"}},
      .outputs = {{"dlogits"}},
      .attrs = {{"ignore_index", AttrType::integer, AttrValue(int64_t{-100}),
                 "class label whose elements get a zero gradient", "ignore="}},
      .shape = softmax_xent_backward_shape,
      .forward = softmax_xent_backward_kernel,
      .vjp = xent_backward_vjp,
      .vjp_formula =
          "dz = y * (u - sum_c(y * u)) with u = gbar * seed, "
          "dseed = sum_c((y - onehot) * gbar); y = softmax(z), ignored elements 0",
      .vjp_reads_outputs = false,
      .sample = softmax_xent_backward_sample,
  };
}

}  // namespace

void register_softmax_ops() {
  register_builtin(softmax_def());
  register_builtin(log_softmax_def());
  register_builtin(one_hot_def());
  register_builtin(softmax_xent_def());
  register_builtin(softmax_xent_backward_def());
}

Var softmax_xent_backward(const Var& logits, const Var& labels, const Var& seed,
                          int64_t ignore_index, Loc loc) {
  static const OpDef& op = builtin("softmax_xent_backward");
  return call_op(op, {logits, labels, seed}, Attrs(op, {{"ignore_index", ignore_index}}), loc);
}
Var softmax(const Var& x, int64_t axis, Loc loc) {
  static const OpDef& op = builtin("softmax");
  return call_op(op, {x}, Attrs(op, {{"axis", axis}}), loc);
}
Var log_softmax(const Var& x, int64_t axis, Loc loc) {
  static const OpDef& op = builtin("log_softmax");
  return call_op(op, {x}, Attrs(op, {{"axis", axis}}), loc);
}
Var one_hot(const Var& labels, int64_t num_classes, bool float64, Loc loc) {
  static const OpDef& op = builtin("one_hot");
  return call_op(op, {labels}, Attrs(op, {{"num_classes", num_classes}, {"float64", float64}}),
                 loc);
}
Var softmax_xent(const Var& logits, const Var& labels, SoftmaxXentOptions o, Loc loc) {
  static const OpDef& op = builtin("softmax_xent");
  const Attrs attrs(op, {{"reduction", o.reduction},
                         {"ignore_index", o.ignore_index},
                         {"label_smoothing", o.label_smoothing}});
  if (o.weight.defined()) return call_op(op, {logits, labels, o.weight}, attrs, loc);
  return call_op(op, {logits, labels}, attrs, loc);
}

}  // namespace dg
