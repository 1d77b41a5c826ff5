// The softmax family: softmax and log_softmax over axis 1, one_hot, and the fused, numerically
// stable softmax_xent (softmax + cross-entropy) with class-index or probability labels.
//
// Stability: every exp is of z - max_c z <= 0, and log(sum exp) is taken of a sum >= 1, so
// logits of any magnitude give finite results.
#include <cmath>
#include <limits>

#include "deltagraph/check.h"
#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {

// A tensor [N, C, d...] seen as N x C x S with the class axis strided by S.
struct ClassLayout {
  int64_t N, C, S;
};
ClassLayout class_layout(const Shape& s) {
  int64_t inner = 1;
  for (int d = 2; d < s.size(); ++d) inner *= s[d];
  return {s[0], s[1], inner};
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

// log(sum_c exp(z_c)) for the element at (n, s), computed as m + log(sum exp(z - m)).
template <class T>
T log_sum_exp(const T* z, int64_t C, int64_t stride) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t c = 0; c < C; ++c) m = std::max(m, z[c * stride]);
  if (!std::isfinite(m)) return m;
  T total = 0;
  for (int64_t c = 0; c < C; ++c) total += std::exp(z[c * stride] - m);
  return m + std::log(total);
}

// y = softmax(x) or log_softmax(x) over axis 1.
template <class T>
void softmax_forward(const Tensor& x, Tensor& y, bool log) {
  const ClassLayout L = class_layout(x.shape());
  const T* px = x.data<T>();
  T* py = y.data<T>();
  kernels::parallel_for(L.N * L.S, 3 * L.C, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t n = k / L.S, s = k % L.S;
      const T* z = px + n * L.C * L.S + s;
      T* out = py + n * L.C * L.S + s;
      const T lse = log_sum_exp(z, L.C, L.S);
      for (int64_t c = 0; c < L.C; ++c)
        out[c * L.S] = log ? z[c * L.S] - lse : std::exp(z[c * L.S] - lse);
    }
  });
}

void check_class_input(const OpCall& c) {
  if (c.input(0).dim() < 2)
    shape_fail(c, "x must be [N,C] or [N,C,H,W], got {}", c.input(0).shape());
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
  kernels::parallel_for(L.N * L.S, 3 * L.C, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t n = k / L.S, s = k % L.S;
      const T* z = pz + n * L.C * L.S + s;
      if (classes) {
        const int64_t label = pc[k];
        pl[k] = label == ignore_index ? T(0) : log_sum_exp(z, L.C, L.S) - z[label * L.S];
      } else {
        const T lse = log_sum_exp(z, L.C, L.S);
        const T* t = pt + n * L.C * L.S + s;
        T total = 0;
        for (int64_t c = 0; c < L.C; ++c) total += t[c * L.S] * (lse - z[c * L.S]);
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

std::vector<Var> xent_vjp(const VjpContext& c) {
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
  if (classes && counted_elements(labels.value(), ignore_index) != labels.numel())
    s = mul(s, Var(valid_mask(labels.value(), ignore_index, z.dtype())));
  const Var seed = reshape(s, with_unit_class_axis(z.shape()));
  Var dz, dt;
  if (c.needs(0)) {
    if (classes) {
      dz = mul(sub(softmax(z), one_hot(labels, z.shape()[1], z.dtype() == DType::f64)), seed);
    } else {
      dz = mul(sub(mul(softmax(z), sum(labels, {.axes = {1}, .keepdims = true})), labels), seed);
    }
  }
  if (c.needs(1)) dt = neg(mul(seed, log_softmax(z)));
  return {dz, dt};
}

// logits [N,C] or [N,C,H,W] for the property tests.
Shape sample_class_shape(Sampler& s) {
  Shape shape{s.integer(1, 3), s.integer(1, 4)};
  if (s.boolean()) {
    shape.push_back(s.integer(1, 3));
    shape.push_back(s.integer(1, 3));
  }
  return shape;
}

OpSample sample_softmax(Sampler& s) {
  const Shape shape = sample_class_shape(s);
  return OpSample{{s.smooth(shape)}, {}, all_batched(1)};
}

}  // namespace

void register_softmax_ops() {
  // softmax and log_softmax share their shape rule and kernel (log picks the output form).
  auto register_softmax_like = [](std::string name, std::string summary, bool log, VjpFn vjp,
                                  std::string formula) {
    register_builtin({
        .name = std::move(name),
        .summary = std::move(summary),
        .inputs = {{"x"}},
        .shape =
            [](const OpCall& c) {
              check_class_input(c);
              return same_as_input(c);
            },
        .forward =
            [log](const OpCall& c, std::span<const TensorSpec> specs) {
              Tensor y(specs[0].shape, specs[0].dtype);
              dispatch_float(y.dtype(),
                             [&](auto t) { softmax_forward<decltype(t)>(c.input(0), y, log); });
              return std::vector<Tensor>{y};
            },
        .vjp = std::move(vjp),
        .vjp_formula = std::move(formula),
        .sample = sample_softmax,
    });
  };
  register_softmax_like(
      "softmax", "exp(x) / sum_c exp(x) over axis 1", false,
      [](const VjpContext& c) -> std::vector<Var> {
        const Var &y = c.output(0), &g = c.grad_output(0);
        return {mul(y, sub(g, sum(mul(y, g), {.axes = {1}, .keepdims = true})))};
      },
      "dx = y * (g - sum_c(y * g))");
  register_softmax_like(
      "log_softmax", "x - log(sum_c exp(x)) over axis 1", true,
      [](const VjpContext& c) -> std::vector<Var> {
        const Var& g = c.grad_output(0);
        return {sub(g, mul(softmax(c.input(0)), sum(g, {.axes = {1}, .keepdims = true})))};
      },
      "dx = g - softmax(x) * sum_c(g)");
  register_builtin({
      .name = "one_hot",
      .summary = "int64 labels [N, d...] -> [N, C, d...] with 1 at each label (labels outside [0, "
                 "C) give 0s)",
      .inputs = {{"labels", InputKind::int64}},
      .attrs = {{"num_classes", AttrType::integer, std::nullopt, "C"},
                {"float64", AttrType::boolean, AttrValue(false),
                 "float64 output instead of float32"}},
      .shape =
          [](const OpCall& c) {
            const Shape& l = c.input(0).shape();
            const int64_t C = c.attrs.integer("num_classes");
            if (l.size() < 1) shape_fail(c, "labels must have a batch axis, got a scalar");
            if (C < 1) shape_fail(c, "num_classes must be at least 1, got {}", C);
            Shape out{l[0], C};
            for (int d = 1; d < l.size(); ++d) out.push_back(l[d]);
            return std::vector<TensorSpec>{
                {out, c.attrs.boolean("float64") ? DType::f64 : DType::f32}};
          },
      .forward =
          [](const OpCall& c, std::span<const TensorSpec> specs) {
            Tensor y = Tensor::zeros(specs[0].shape, specs[0].dtype);
            const ClassLayout L = class_layout(y.shape());
            const int64_t* pl = c.input(0).data<int64_t>();
            dispatch_float(y.dtype(), [&](auto t) {
              using T = decltype(t);
              T* py = y.data<T>();
              for (int64_t k = 0; k < L.N * L.S; ++k) {
                const int64_t label = pl[k];
                if (label >= 0 && label < L.C)
                  py[(k / L.S) * L.C * L.S + label * L.S + k % L.S] = T(1);
              }
            });
            return std::vector<Tensor>{y};
          },
      .sample =
          [](Sampler& s) {
            const Shape l = sample_shape(s, 1, 3);
            const int64_t classes = s.integer(1, 4);
            return OpSample{{s.indices(l, classes + 1)},
                            {{"num_classes", classes}, {"float64", s.dtype() == DType::f64}},
                            all_batched(1)};
          },
  });
  register_builtin({
      .name = "softmax_xent",
      .summary = "fused softmax + cross-entropy over axis 1 (class indices or probabilities)",
      .inputs = {{"logits"}, {"labels", InputKind::float_or_int64}},
      .outputs = {{"loss"}},
      .attrs = {{"reduction", AttrType::string, AttrValue("mean"), "\"mean\", \"sum\" or \"none\""},
                {"ignore_index", AttrType::integer, AttrValue(int64_t{-100}),
                 "class label to skip (excluded from the mean)", "ignore="}},
      .shape =
          [](const OpCall& c) {
            const Tensor &z = c.input(0), &labels = c.input(1);
            if (z.dim() < 2) shape_fail(c, "logits must be [N,C] or [N,C,H,W], got {}", z.shape());
            const std::string& reduction = c.attrs.string("reduction");
            if (reduction != "mean" && reduction != "sum" && reduction != "none")
              shape_fail(c, "reduction must be \"mean\", \"sum\" or \"none\", got \"{}\"",
                         reduction);
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
                shape_fail(c, "probability labels are {} but logits are {}; they must match",
                           labels.shape(), z.shape());
              if (labels.dtype() != z.dtype())
                shape_fail(c, "probability labels are {} but logits are {}", labels.dtype(),
                           z.dtype());
            }
            return std::vector<TensorSpec>{{reduction == "none" ? elements : Shape{}, z.dtype()}};
          },
      .forward =
          [](const OpCall& c, std::span<const TensorSpec> specs) {
            const Tensor &z = c.input(0), &labels = c.input(1);
            const int64_t ignore = c.attrs.integer("ignore_index");
            Tensor losses(element_shape(z.shape()), z.dtype());
            dispatch_float(z.dtype(),
                           [&](auto t) { xent_forward<decltype(t)>(z, labels, ignore, losses); });
            const std::string& reduction = c.attrs.string("reduction");
            if (reduction == "none") return std::vector<Tensor>{losses};
            double total = 0;
            for (int64_t i = 0; i < losses.numel(); ++i) total += losses.at(i);
            if (reduction == "mean") {
              const int64_t count = counted_elements(labels, ignore);
              total = count ? total / static_cast<double>(count) : std::nan("");
            }
            return std::vector<Tensor>{Tensor::full(specs[0].shape, total, z.dtype())};
          },
      .vjp = xent_vjp,
      .vjp_formula = "dz = s * (softmax(z) * sum_c t - t), dt = -s * log_softmax(z)",
      .sample =
          [](Sampler& s) {
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
                  for (int64_t c = 0; c < L.C; ++c)
                    total += p[(k / L.S) * L.C * L.S + c * L.S + k % L.S];
                  for (int64_t c = 0; c < L.C; ++c)
                    p[(k / L.S) * L.C * L.S + c * L.S + k % L.S] /= total;
                }
              });
              labels = normalised;
            }
            return OpSample{{s.smooth(shape), labels},
                            {{"reduction", reduction}, {"ignore_index", int64_t{-1}}},
                            reduction == "none" ? all_batched(2) : std::vector<bool>{}};
          },
  });
}

Var softmax(const Var& x, Loc loc) {
  static const OpDef& op = builtin("softmax");
  return call_op(op, {x}, loc);
}
Var log_softmax(const Var& x, Loc loc) {
  static const OpDef& op = builtin("log_softmax");
  return call_op(op, {x}, loc);
}
Var one_hot(const Var& labels, int64_t num_classes, bool float64, Loc loc) {
  static const OpDef& op = builtin("one_hot");
  return call_op(op, {labels}, Attrs(&op, {AttrValue(num_classes), AttrValue(float64)}), loc);
}
Var softmax_xent(const Var& logits, const Var& labels, SoftmaxXentOptions o, Loc loc) {
  static const OpDef& op = builtin("softmax_xent");
  return call_op(op, {logits, labels},
                 Attrs(&op, {AttrValue(o.reduction), AttrValue(o.ignore_index)}), loc);
}

}  // namespace dg
