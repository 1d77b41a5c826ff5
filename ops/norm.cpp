// The normalisation family: batch_norm2d (F.batch_norm on [N,C,H,W]) and its fused gradient
// batch_norm2d_backward.
//
// Training normalises each channel c with the batch's statistics over N, H and W
// (n = N*H*W values):
//   mean_c = sum x / n,  var_c = sum (x - mean_c)^2 / n (biased),  rstd_c = 1/sqrt(var_c + eps)
//   xhat = (x - mean_c) * rstd_c,  y = weight_c * xhat + bias_c
// and updates the running buffers in place, as PyTorch does:
//   running_mean = (1 - momentum) running_mean + momentum mean_c
//   running_var  = (1 - momentum) running_var  + momentum var_c * n / (n - 1)   (unbiased)
// Evaluation normalises with the running buffers instead and leaves them alone.
//
// The VJP in training (g = dL/dy; means over N, H, W):
//   dbias_c   = sum g
//   dweight_c = sum g * xhat
//   dx        = weight_c * rstd_c * (g - mean(g) - xhat * mean(g * xhat))
// The statistics depend on x, hence the two mean terms. One fused op computes all three
// (batch_norm2d_backward). Its own VJP, needed for second derivatives, is the engine's: the same
// formulas written with registered ops (batch_norm2d_gradients), differentiated.
#include <Eigen/Core>
#include <cmath>
#include <optional>

#include "deltagraph/core/autodiff.h"
#include "deltagraph/core/tape.h"
#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {

template <class T>
using ConstPlane = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Per-channel sums over x [N,C,H,W] (and g, when given) in one pass, for the statistics and
// the gradient. Each plane is summed in T (vectorised; a plane is at most a few thousand
// values), the planes' sums in double. Values are taken relative to a shift, the channel's first
// value, so that var = E[(x-s)^2] - E[x-s]^2 does not cancel catastrophically when |mean| is
// much larger than the spread (the shifted-data algorithm).
struct ChannelSums {
  std::vector<double> mean, var;              // of x; var biased
  std::vector<double> sum_g, sum_gx_centred;  // sum g and sum g (x - mean), when g is given
};

template <class T>
ChannelSums channel_sums(const Tensor& x, const Tensor* g) {
  const int64_t N = x.size(0), C = x.size(1), plane = x.size(2) * x.size(3);
  const double count = static_cast<double>(N * plane);
  ChannelSums s;
  s.mean.assign(C, 0.0);
  s.var.assign(C, 0.0);
  if (g) {
    s.sum_g.assign(C, 0.0);
    s.sum_gx_centred.assign(C, 0.0);
  }
  const T* px = x.data<T>();
  const T* pg = g ? g->data<T>() : nullptr;
  kernels::parallel_for(C, 3 * N * plane, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const T shift = px[c * plane];
      double sx = 0, sxx = 0, sg = 0, sgx = 0;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t offset = (n * C + c) * plane;
        const auto xs = ConstPlane<T>(px + offset, plane) - shift;
        sx += static_cast<double>(xs.sum());
        sxx += static_cast<double>(xs.square().sum());
        if (pg) {
          const ConstPlane<T> gv(pg + offset, plane);
          sg += static_cast<double>(gv.sum());
          sgx += static_cast<double>((gv * xs).sum());
        }
      }
      const double shifted_mean = sx / count;
      s.mean[c] = static_cast<double>(shift) + shifted_mean;
      s.var[c] = std::max(sxx / count - shifted_mean * shifted_mean, 0.0);
      if (pg) {
        s.sum_g[c] = sg;
        s.sum_gx_centred[c] = sgx - shifted_mean * sg;  // sum g (x - mean)
      }
    }
  });
  return s;
}

// y = x * scale_c + shift_c over [N,C,H,W].
template <class T>
void affine_per_channel(const Tensor& x, const std::vector<double>& scale,
                        const std::vector<double>& shift, Tensor& y) {
  const int64_t N = x.size(0), C = x.size(1), plane = x.size(2) * x.size(3);
  const T* px = x.data<T>();
  T* py = y.data<T>();
  kernels::parallel_for(N * C, plane, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r % C;
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(py + r * plane, plane) =
          Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(px + r * plane, plane) *
              static_cast<T>(scale[c]) +
          static_cast<T>(shift[c]);
    }
  });
}

template <class T>
std::vector<double> values_of(const Tensor& t) {
  std::vector<double> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = static_cast<double>(t.data<T>()[i]);
  return v;
}

// Checks x [N,C,H,W] and the four [C] vectors; training needs more than one value per channel
// (the unbiased variance of one value is undefined; PyTorch refuses it too).
void check_batch_norm_inputs(const OpCall& c, bool training, int first_vector) {
  expect_rank(c, first_vector == 1 ? 0 : 1, 4, "[N,C,H,W]");
  const Shape& x = c.input(first_vector == 1 ? 0 : 1).shape();
  for (int i = first_vector; i < static_cast<int>(c.inputs.size()); ++i) {
    const Shape& v = c.input(i).shape();
    if (v.size() != 1 || v[0] != x[1])
      shape_fail(c, "{} must be [C] = [{}] for x {} (one value per channel), got {}",
                 c.op.input_name(i), x[1], x, v);
  }
  if (training && x[0] * x[2] * x[3] <= 1)
    shape_fail(c,
               "training needs more than one value per channel to normalise, got x {} (N*H*W = "
               "{}); use training = false, or a larger batch",
               x, x[0] * x[2] * x[3]);
}

// ---- batch_norm2d -------------------------------------------------------------------------

std::vector<TensorSpec> batch_norm2d_shape(const OpCall& c) {
  check_batch_norm_inputs(c, c.attrs.boolean("training"), 1);
  const double momentum = c.attrs.real("momentum"), eps = c.attrs.real("eps");
  if (!(eps > 0)) shape_fail(c, "eps must be positive, got {}", eps);
  if (!(momentum >= 0 && momentum <= 1))
    shape_fail(c, "momentum must be in [0, 1], got {}", momentum);
  return same_as_input(c);
}

std::vector<Tensor> batch_norm2d_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor& x = c.input(0);
  Tensor y(specs[0].shape, specs[0].dtype);
  const bool training = c.attrs.boolean("training");
  const double momentum = c.attrs.real("momentum"), eps = c.attrs.real("eps");
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    const std::vector<double> w = values_of<T>(c.input(1)), b = values_of<T>(c.input(2));
    std::vector<double> mean, var;
    if (training) {
      ChannelSums sums = channel_sums<T>(x, nullptr);
      mean = std::move(sums.mean);
      var = std::move(sums.var);
      // The buffers are updated in place: they are shared handles, the model's own tensors.
      Tensor running_mean = c.input(3), running_var = c.input(4);
      const double n = static_cast<double>(x.size(0) * x.size(2) * x.size(3));
      T* rm = running_mean.data<T>();
      T* rv = running_var.data<T>();
      for (size_t k = 0; k < mean.size(); ++k) {
        rm[k] = static_cast<T>((1 - momentum) * rm[k] + momentum * mean[k]);
        rv[k] = static_cast<T>((1 - momentum) * rv[k] + momentum * var[k] * n / (n - 1));
      }
    } else {
      mean = values_of<T>(c.input(3));
      var = values_of<T>(c.input(4));
    }
    std::vector<double> scale(mean.size()), shift(mean.size());
    for (size_t k = 0; k < mean.size(); ++k) {
      scale[k] = w[k] / std::sqrt(var[k] + eps);
      shift[k] = b[k] - mean[k] * scale[k];
    }
    affine_per_channel<T>(x, scale, shift, y);
  });
  return std::vector<Tensor>{y};
}

// v [C] as [1,C,1,1], to broadcast over x.
Var per_channel(const Var& v) { return reshape(v, Shape{1, v.shape()[0], 1, 1}); }

const ReduceOptions over_nhw{.axes = {0, 2, 3}, .keepdims = true};
const ReduceOptions over_nhw_to_c{.axes = {0, 2, 3}, .keepdims = false};

// Training-mode batch norm's gradients {dx, dweight, dbias} written with registered ops: what
// batch_norm2d_backward computes in one pass, in a form the engine can differentiate.
std::vector<Var> batch_norm2d_gradients(const Var& g, const Var& x, const Var& weight, double eps) {
  const Var centred = sub(x, mean(x, over_nhw));
  const Var var = mean(mul(centred, centred), over_nhw);
  const Var rstd = exp(mul_scalar(log(add_scalar(var, eps)), -0.5));  // (var + eps)^(-1/2)
  const Var xhat = mul(centred, rstd);
  const Var dxhat = mul(g, per_channel(weight));
  const Var dx = mul(
      rstd, sub(sub(dxhat, mean(dxhat, over_nhw)), mul(xhat, mean(mul(dxhat, xhat), over_nhw))));
  return {dx, sum(mul(g, xhat), over_nhw_to_c), sum(g, over_nhw_to_c)};
}

// Evaluation is an affine map with constant statistics:
//   dx = g * weight_c * rstd_c,  dweight_c = sum g * (x - running_mean_c) * rstd_c,  dbias_c = sum
//   g
std::vector<Var> batch_norm2d_eval_vjp(const VjpContext& c) {
  const Var &x = c.input(0), &weight = c.input(1), &g = c.grad_output(0);
  const double eps = c.attrs.real("eps");
  // The buffers are constants here: no gradient flows into running statistics.
  const Var running_mean = per_channel(Var(c.input(3).value()));
  const Var rstd =
      exp(mul_scalar(log(add_scalar(per_channel(Var(c.input(4).value())), eps)), -0.5));
  Var dx, dweight, dbias;
  if (c.needs(0)) dx = mul(g, mul(per_channel(weight), rstd));
  if (c.needs(1)) dweight = sum(mul(g, mul(sub(x, running_mean), rstd)), over_nhw_to_c);
  if (c.needs(2)) dbias = sum(g, over_nhw_to_c);
  return {dx, dweight, dbias, Var(), Var()};
}

std::vector<Var> batch_norm2d_vjp(const VjpContext& c) {
  if (!c.attrs.boolean("training")) return batch_norm2d_eval_vjp(c);
  std::vector<Var> fused =
      batch_norm2d_backward(c.grad_output(0), c.input(0), c.input(1), c.attrs.real("eps"));
  for (int i = 0; i < 3; ++i)
    if (!c.needs(i)) fused[i] = Var();
  fused.resize(5);
  return fused;
}

OpSample batch_norm2d_sample(Sampler& s) {
  const int64_t C = s.integer(1, 3);
  const bool training = s.integer(0, 3) != 0;
  // Training needs N*H*W > 1: at least two images.
  const Shape x{s.integer(2, 3), C, s.integer(1, 3), s.integer(1, 3)};
  return OpSample{
      {s.smooth(x), s.smooth({C}), s.smooth({C}), s.smooth({C}), s.positive({C})},
      {{"training", training}, {"momentum", s.choose({0.1, 0.5})}, {"eps", s.choose({1e-5, 0.1})}},
      training ? std::vector<bool>{} : std::vector<bool>{true, false, false, false, false}};
}

OpDef batch_norm2d_def() {
  return {
      .name = "batch_norm2d",
      .summary =
          "normalises each channel of [N,C,H,W] (F.batch_norm): batch statistics and a "
          "running-buffer update in training, the running buffers in evaluation",
      .inputs = {{"x"},
                 {"weight"},
                 {"bias"},
                 {"running_mean", InputKind::buffer},
                 {"running_var", InputKind::buffer}},
      .attrs = {{"training", AttrType::boolean, AttrValue(true),
                 "batch statistics, buffers updated in place (false: use the buffers)", "train"},
                {"momentum", AttrType::real, AttrValue(0.1),
                 "weight of the new batch in the running buffers"},
                {"eps", AttrType::real, AttrValue(1e-5), "added to the variance"}},
      .shape = batch_norm2d_shape,
      .forward = batch_norm2d_kernel,
      .vjp = batch_norm2d_vjp,
      .vjp_formula =
          "dx = w*rstd*(g - mean(g) - xhat*mean(g*xhat)), dw = sum g*xhat, "
          "db = sum g (means and sums over N,H,W)",
      .vjp_reads_outputs = false,
      .label =
          [](const Attrs& a, std::span<const Shape>) {
            return std::string(a.boolean("training") ? "batch_norm2d" : "batch_norm2d eval");
          },
      .sample = batch_norm2d_sample,
  };
}

// ---- batch_norm2d_backward ----------------------------------------------------------------

// The VJP of the fused gradients: the engine differentiates their composite form
// (batch_norm2d_gradients), rebuilt from this node's inputs. When the backward pass is itself
// recorded, the composite hangs off the recorded inputs, so that higher derivatives go on
// through it; otherwise it is recorded from fresh leaves just for this one pass.
std::vector<Var> batch_norm2d_backward_vjp(const VjpContext& c) {
  const bool recorded = Tape::recording();
  std::optional<ForceRecording> force;
  if (!recorded) force.emplace();
  std::vector<Var> leaves;
  // Recorded inputs are differentiated where they are (so that the result is differentiable in
  // them); the others (constants: forward mode's transposed VJP passes the inputs so) by a leaf
  // of the same value.
  for (int i = 0; i < 3; ++i)
    leaves.push_back(recorded && c.input(i).requires_grad() ? c.input(i)
                                                            : variable(c.input(i).value()));
  const std::vector<Var> grads =
      batch_norm2d_gradients(leaves[0], leaves[1], leaves[2], c.attrs.real("eps"));
  const std::vector<Var> cotangents(c.grad_outputs.begin(), c.grad_outputs.end());
  std::vector<Var> result = grad(grads, leaves, cotangents, {.create_graph = recorded});
  for (int i = 0; i < 3; ++i)
    if (!c.needs(i)) result[i] = Var();
  return result;
}

std::vector<TensorSpec> batch_norm2d_backward_shape(const OpCall& c) {
  expect_rank(c, 0, 4, "[N,C,H,W]");
  if (!(c.input(0).shape() == c.input(1).shape()))
    shape_fail(c, "g is {} but x is {}; they must have the same shape", c.input(0).shape(),
               c.input(1).shape());
  check_batch_norm_inputs(c, true, 2);
  const DType dtype = c.input(0).dtype();
  const Shape channels{c.input(1).size(1)};
  return {{c.input(0).shape(), dtype}, {channels, dtype}, {channels, dtype}};
}

std::vector<Tensor> batch_norm2d_backward_kernel(const OpCall& c,
                                                 std::span<const TensorSpec> specs) {
  const Tensor &g = c.input(0), &x = c.input(1);
  Tensor dx(specs[0].shape, specs[0].dtype), dweight(specs[1].shape, specs[1].dtype),
      dbias(specs[2].shape, specs[2].dtype);
  const double eps = c.attrs.real("eps");
  dispatch_float(dx.dtype(), [&](auto t) {
    using T = decltype(t);
    const ChannelSums sums = channel_sums<T>(x, &g);
    const std::vector<double> w = values_of<T>(c.input(2));
    const int64_t N = x.size(0), C = x.size(1), plane = x.size(2) * x.size(3);
    const double count = static_cast<double>(N * plane);
    std::vector<T> a(C), b(C), d(C);
    for (int64_t ch = 0; ch < C; ++ch) {
      const double rstd = 1 / std::sqrt(sums.var[ch] + eps);
      const double sum_gxhat = sums.sum_gx_centred[ch] * rstd;
      dweight.data<T>()[ch] = static_cast<T>(sum_gxhat);
      dbias.data<T>()[ch] = static_cast<T>(sums.sum_g[ch]);
      // dx = k (g - mean(g) - xhat mean(g xhat)), k = w rstd, written as a g + b x + d.
      const double k = w[ch] * rstd, mean_g = sums.sum_g[ch] / count,
                   mean_gxhat = sum_gxhat / count;
      a[ch] = static_cast<T>(k);
      b[ch] = static_cast<T>(-k * mean_gxhat * rstd);
      d[ch] = static_cast<T>(-k * mean_g + k * mean_gxhat * rstd * sums.mean[ch]);
    }
    const T *pg = g.data<T>(), *px = x.data<T>();
    T* pdx = dx.data<T>();
    kernels::parallel_for(N * C, 2 * plane, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t ch = r % C, offset = r * plane;
        Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(pdx + offset, plane) =
            a[ch] * ConstPlane<T>(pg + offset, plane) + b[ch] * ConstPlane<T>(px + offset, plane) +
            d[ch];
      }
    });
  });
  return std::vector<Tensor>{dx, dweight, dbias};
}

OpSample batch_norm2d_backward_sample(Sampler& s) {
  const int64_t C = s.integer(1, 3);
  // At least 4 values per channel. With 2, the normalised values are +-1/sqrt(1 + eps/var)
  // whatever x is, so dx is a difference of terms ~1/sigma that cancel to ~eps/var: in float32
  // the float32 property then fails on a well-behaved op (seen at 150 trials).
  const int64_t H = s.integer(1, 3), W = s.integer(H == 1 ? 2 : 1, 3);
  const Shape x{s.integer(2, 3), C, H, W};
  return OpSample{{s.smooth(x), s.smooth(x), s.smooth({C})}, {{"eps", s.choose({1e-5, 0.1})}}};
}

OpDef batch_norm2d_backward_def() {
  return {
      .name = "batch_norm2d_backward",
      .summary =
          "the gradients of training-mode batch_norm2d in one pass: dx, dweight, dbias "
          "for upstream g (statistics recomputed from x)",
      .inputs = {{"g"}, {"x"}, {"weight"}},
      .outputs = {{"dx"}, {"dweight"}, {"dbias"}},
      .attrs = {{"eps", AttrType::real, AttrValue(1e-5), "added to the variance"}},
      .shape = batch_norm2d_backward_shape,
      .forward = batch_norm2d_backward_kernel,
      .vjp = batch_norm2d_backward_vjp,
      .vjp_formula = "the engine's VJP of the same formulas written with registered ops",
      .vjp_reads_outputs = false,
      .sample = batch_norm2d_backward_sample,
  };
}

}  // namespace

void register_norm_ops() {
  register_builtin(batch_norm2d_def());
  register_builtin(batch_norm2d_backward_def());
}

Var batch_norm2d(const Var& x, const Var& weight, const Var& bias, const Var& running_mean,
                 const Var& running_var, BatchNorm2dOptions o, Loc loc) {
  static const OpDef& op = builtin("batch_norm2d");
  return call_op(op, {x, weight, bias, running_mean, running_var},
                 Attrs(op, {{"training", o.training}, {"momentum", o.momentum}, {"eps", o.eps}}),
                 loc);
}

std::vector<Var> batch_norm2d_backward(const Var& g, const Var& x, const Var& weight, double eps,
                                       Loc loc) {
  static const OpDef& op = builtin("batch_norm2d_backward");
  const Var inputs[] = {g, x, weight};
  return call(op, inputs, Attrs(op, {{"eps", eps}}), loc);
}

}  // namespace dg
