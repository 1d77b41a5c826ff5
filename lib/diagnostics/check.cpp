// Gradient checks: engine VJPs against central finite differences in float64.
#include "deltagraph/diagnostics/check.h"

#include <cmath>
#include <random>

#include "deltagraph/core/autodiff.h"
#include "deltagraph/core/tape.h"

namespace dg {

namespace {

struct Evaluation {
  std::vector<Var> vars;     // the inputs as Vars (differentiable where checked)
  std::vector<Var> outputs;  // f's outputs
};

std::vector<bool> checked_inputs(const std::vector<Tensor>& inputs, const CheckOptions& o) {
  std::vector<bool> wrt(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    wrt[i] = is_floating(inputs[i].dtype()) && (o.wrt.empty() || (i < o.wrt.size() && o.wrt[i]));
  return wrt;
}

Evaluation evaluate(const CheckedFunction& f, const std::vector<Tensor>& inputs,
                    const std::vector<bool>& wrt) {
  Evaluation e;
  for (size_t i = 0; i < inputs.size(); ++i)
    e.vars.push_back(wrt[i] ? variable(inputs[i]) : constant(inputs[i]));
  e.outputs = f(e.vars);
  return e;
}

// <v, f(x)> summed over the floating outputs.
double project(const std::vector<Var>& outputs, const std::vector<Tensor>& v) {
  double s = 0;
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (!v[k].defined()) continue;
    const Tensor y = outputs[k].value().to(DType::f64);
    const double* py = y.data<double>();
    const double* pv = v[k].data<double>();
    for (int64_t i = 0; i < y.numel(); ++i) s += py[i] * pv[i];
  }
  return s;
}

std::vector<Tensor> to_f64(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out;
  for (const Tensor& t : inputs)
    out.push_back(is_floating(t.dtype()) ? t.to(DType::f64).clone() : t);
  return out;
}

std::vector<Tensor> random_cotangents(const std::vector<Var>& outputs, uint64_t seed) {
  std::vector<Tensor> v;
  for (size_t k = 0; k < outputs.size(); ++k)
    v.push_back(is_floating(outputs[k].dtype()) && outputs[k].requires_grad()
                    ? Tensor::randn(outputs[k].shape(), seed + 7919 * (k + 1), DType::f64)
                    : Tensor());
  return v;
}

// The engine's J^T v for every checked input (zeros where the outputs do not depend on it).
std::vector<Tensor> analytic_vjp(const Evaluation& e, const std::vector<Tensor>& v,
                                 const std::vector<bool>& wrt) {
  std::vector<Var> outs, cots, targets;
  for (size_t k = 0; k < e.outputs.size(); ++k)
    if (v[k].defined()) {
      outs.push_back(e.outputs[k]);
      cots.push_back(Var(v[k].to(e.outputs[k].dtype())));
    }
  std::vector<int> index;
  for (size_t i = 0; i < wrt.size(); ++i)
    if (wrt[i]) {
      targets.push_back(e.vars[i]);
      index.push_back(static_cast<int>(i));
    }
  std::vector<Tensor> result(wrt.size());
  if (outs.empty() || targets.empty()) {
    for (size_t i = 0; i < wrt.size(); ++i)
      if (wrt[i]) result[i] = Tensor::zeros(e.vars[i].shape(), DType::f64);
    return result;
  }
  auto grads = grad(outs, targets, cots);
  for (size_t j = 0; j < grads.size(); ++j) result[index[j]] = grads[j].value().to(DType::f64);
  return result;
}

struct Comparator {
  const CheckOptions& o;
  CheckResult result;
  int reported = 0;

  void compare(double analytic, double numeric, const std::string& where) {
    const double allowed = o.atol + o.rtol * std::abs(numeric);
    const double ratio = std::abs(analytic - numeric) / allowed;
    if (std::isnan(analytic) || std::isnan(numeric) || ratio > 1) {
      result.ok = false;
      if (reported++ < 8)
        result.report += fmt::format(
            "  {}: analytic {:.10g} vs numeric {:.10g} (|diff| {:.3g} > "
            "atol {:.3g} + rtol {:.3g} * |numeric|)\n",
            where, analytic, numeric, std::abs(analytic - numeric), o.atol, o.rtol);
    }
    if (!std::isnan(ratio)) result.worst_error = std::max(result.worst_error, ratio);
  }
};

}  // namespace

CheckResult gradcheck(const CheckedFunction& f, const std::vector<Tensor>& raw_inputs,
                      const CheckOptions& o) {
  std::vector<Tensor> inputs = to_f64(raw_inputs);
  const std::vector<bool> wrt = checked_inputs(inputs, o);
  Tape tape;
  Evaluation base = evaluate(f, inputs, wrt);
  const std::vector<Tensor> v = random_cotangents(base.outputs, o.seed);
  const std::vector<Tensor> analytic = analytic_vjp(base, v, wrt);

  // Evaluated with the checked inputs differentiable, like the analytic pass: f may itself
  // take gradients (gradgradcheck checks a VJP this way).
  auto value_at = [&](const std::vector<Tensor>& xs) {
    return project(evaluate(f, xs, wrt).outputs, v);
  };
  Comparator cmp{o, {}};
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (wrt[i]) total += inputs[i].numel();

  if (total <= o.full_limit) {
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!wrt[i]) continue;
      double* x = inputs[i].data<double>();
      for (int64_t e = 0; e < inputs[i].numel(); ++e) {
        const double saved = x[e];
        x[e] = saved + o.eps;
        const double plus = value_at(inputs);
        x[e] = saved - o.eps;
        const double minus = value_at(inputs);
        x[e] = saved;
        cmp.compare(analytic[i].data<double>()[e], (plus - minus) / (2 * o.eps),
                    fmt::format("input {} element {}", i, multi_index(inputs[i].shape(), e)));
      }
    }
  } else {
    for (int d = 0; d < o.directions; ++d) {
      std::vector<Tensor> plus = inputs, minus = inputs;
      double projected = 0;
      for (size_t i = 0; i < inputs.size(); ++i) {
        if (!wrt[i]) continue;
        Tensor u = Tensor::randn(inputs[i].shape(), o.seed + 104729 * (d + 1) + i, DType::f64);
        plus[i] = inputs[i].clone();
        minus[i] = inputs[i].clone();
        double *pp = plus[i].data<double>(), *pm = minus[i].data<double>();
        const double* pu = u.data<double>();
        const double* pa = analytic[i].data<double>();
        for (int64_t e = 0; e < u.numel(); ++e) {
          pp[e] += o.eps * pu[e];
          pm[e] -= o.eps * pu[e];
          projected += pa[e] * pu[e];
        }
      }
      cmp.compare(projected, (value_at(plus) - value_at(minus)) / (2 * o.eps),
                  fmt::format("random direction {}", d));
    }
  }
  if (!cmp.result.ok)
    cmp.result.report =
        fmt::format("gradcheck failed (float64, eps {:g}):\n{}", o.eps, cmp.result.report);
  return cmp.result;
}

CheckResult gradgradcheck(const CheckedFunction& f, const std::vector<Tensor>& raw_inputs,
                          const CheckOptions& o) {
  std::vector<Tensor> inputs = to_f64(raw_inputs);
  const std::vector<bool> wrt = checked_inputs(inputs, o);
  // Shapes of f's differentiable outputs decide the extra inputs v.
  std::vector<Tensor> v;
  {
    Tape tape;
    Evaluation e = evaluate(f, inputs, wrt);
    v = random_cotangents(e.outputs, o.seed + 1);
  }
  const size_t n = inputs.size();
  std::vector<Tensor> extended = inputs;
  for (const Tensor& t : v)
    if (t.defined()) extended.push_back(t);
  CheckedFunction vjp = [&, n](const std::vector<Var>& xs) {
    // The finite differences evaluate this with constant inputs and recording paused; the VJP
    // inside still needs a recorded graph of f, from differentiable leaves.
    ForceRecording force;
    std::vector<Var> in;
    for (size_t i = 0; i < n; ++i)
      in.push_back(wrt[i] && !xs[i].requires_grad() ? variable(xs[i].value()) : xs[i]);
    std::vector<Var> outs = f(in);
    std::vector<Var> used, cots, targets;
    size_t next = n;
    for (size_t k = 0; k < outs.size(); ++k)
      if (v[k].defined()) {
        used.push_back(outs[k]);
        cots.push_back(xs[next++]);
      }
    for (size_t i = 0; i < n; ++i)
      if (wrt[i]) targets.push_back(in[i]);
    return grad(used, targets, cots, {.create_graph = true});
  };
  CheckOptions second = o;
  second.wrt.assign(extended.size(), true);
  for (size_t i = 0; i < n; ++i) second.wrt[i] = wrt[i];
  CheckResult r = gradcheck(vjp, extended, second);
  if (!r.ok) r.report = "gradgradcheck (the VJP of the VJP): " + r.report;
  return r;
}

CheckResult check_float32(const CheckedFunction& f, const std::vector<Tensor>& inputs, double rtol,
                          double atol, uint64_t seed) {
  std::vector<Tensor> in64 = to_f64(inputs), in32;
  for (const Tensor& t : in64) in32.push_back(is_floating(t.dtype()) ? t.to(DType::f32) : t);
  // The same float32-representable point for both, so only arithmetic differs.
  for (size_t i = 0; i < in64.size(); ++i)
    if (is_floating(in64[i].dtype())) in64[i] = in32[i].to(DType::f64);
  CheckOptions o;
  const std::vector<bool> wrt = checked_inputs(in64, o);
  Tape tape;
  Evaluation e64 = evaluate(f, in64, wrt), e32 = evaluate(f, in32, wrt);
  std::vector<Tensor> v = random_cotangents(e64.outputs, seed);
  for (Tensor& t : v)
    if (t.defined()) t = t.to(DType::f32).to(DType::f64);
  auto g64 = analytic_vjp(e64, v, wrt), g32 = analytic_vjp(e32, v, wrt);
  CheckOptions tol;
  tol.rtol = rtol;
  tol.atol = atol;
  Comparator cmp{tol, {}};
  for (size_t k = 0; k < e64.outputs.size(); ++k) {
    if (!is_floating(e64.outputs[k].dtype())) continue;
    Tensor a = e32.outputs[k].value().to(DType::f64), b = e64.outputs[k].value();
    for (int64_t i = 0; i < a.numel(); ++i)
      cmp.compare(a.at(i), b.at(i),
                  fmt::format("output {} element {}", k, multi_index(a.shape(), i)));
  }
  for (size_t i = 0; i < in64.size(); ++i) {
    if (!wrt[i]) continue;
    for (int64_t j = 0; j < g64[i].numel(); ++j)
      cmp.compare(
          g32[i].at(j), g64[i].at(j),
          fmt::format("gradient of input {} element {}", i, multi_index(g64[i].shape(), j)));
  }
  if (!cmp.result.ok) cmp.result.report = "float32 vs float64 check failed:\n" + cmp.result.report;
  return cmp.result;
}

}  // namespace dg
