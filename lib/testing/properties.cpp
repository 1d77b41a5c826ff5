// Property-based gradient tests over every registered op (see testing.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include "deltagraph/core/autodiff.h"
#include "deltagraph/core/forward.h"
#include "deltagraph/core/tape.h"
#include "deltagraph/diagnostics/cases.h"
#include "deltagraph/ops/ops.h"
#include "deltagraph/testing/properties.h"

namespace dg {

// ---- samplers and generators ------------------------------------------------------------

int64_t PropertySampler::integer(int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  return *rc::gen::inRange<int64_t>(lo, hi + 1);
}

uint64_t PropertySampler::seed() {
  return static_cast<uint64_t>(*rc::gen::inRange<int64_t>(0, int64_t{1} << 40));
}

namespace {

Tensor smooth_values(const Shape& shape, DType dtype, uint64_t seed) {
  Tensor magnitude = Tensor::uniform(shape, seed, DType::f64, 0.1, 1.1);
  Tensor sign = Tensor::uniform(shape, seed ^ 0x9e3779b97f4a7c15ULL, DType::f64, -1, 1);
  double* m = magnitude.data<double>();
  const double* s = sign.data<double>();
  for (int64_t i = 0; i < magnitude.numel(); ++i) m[i] = s[i] < 0 ? -m[i] : m[i];
  return magnitude.to(dtype);
}

Tensor distinct_values(const Shape& shape, DType dtype, uint64_t seed) {
  const int64_t n = shape.product();
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[i] = 0.01 * static_cast<double>(i) - 0.005 * static_cast<double>(n);
  std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
  return Tensor::from(v, shape).to(dtype);
}

Tensor index_values(const Shape& shape, int64_t bound, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, std::max<int64_t>(bound - 1, 0));
  Tensor t(shape, DType::i64);
  for (int64_t& v : t.values<int64_t>()) v = pick(rng);
  return t;
}

}  // namespace

Tensor PropertySampler::smooth(const Shape& shape) { return smooth_values(shape, dtype_, seed()); }
Tensor PropertySampler::distinct(const Shape& shape) {
  return distinct_values(shape, dtype_, seed());
}
Tensor PropertySampler::positive(const Shape& shape) {
  return Tensor::uniform(shape, seed(), DType::f64, 0.5, 2.0).to(dtype_);
}
Tensor PropertySampler::indices(const Shape& shape, int64_t bound) {
  return index_values(shape, bound, seed());
}

namespace gen {
rc::Gen<Tensor> smooth(const Shape& shape, DType dtype) {
  return rc::gen::map(rc::gen::inRange<int64_t>(0, int64_t{1} << 40), [=](int64_t seed) {
    return smooth_values(shape, dtype, static_cast<uint64_t>(seed));
  });
}
rc::Gen<Tensor> distinct(const Shape& shape, DType dtype) {
  return rc::gen::map(rc::gen::inRange<int64_t>(0, int64_t{1} << 40), [=](int64_t seed) {
    return distinct_values(shape, dtype, static_cast<uint64_t>(seed));
  });
}
rc::Gen<Tensor> positive(const Shape& shape, DType dtype) {
  return rc::gen::map(rc::gen::inRange<int64_t>(0, int64_t{1} << 40), [=](int64_t seed) {
    return Tensor::uniform(shape, static_cast<uint64_t>(seed), DType::f64, 0.5, 2.0).to(dtype);
  });
}
rc::Gen<OpSample> op_sample(const OpDef& op, DType dtype) {
  const OpDef* def = &op;
  if (!op.sample) fail("gen::op_sample: op '{}' has no sampler", op.name);
  auto draw = rc::gen::exec([def, dtype] {
    PropertySampler sampler(dtype);
    return def->sample(sampler);
  });
  // Samplers may over-approximate the shape rule; keep the samples the op accepts.
  return rc::gen::suchThat(draw, [def](const OpSample& s) {
    try {
      std::vector<Var> in(s.inputs.begin(), s.inputs.end());
      NoGrad no_grad;
      call(*def, in, make_attrs(*def, s.attrs));
      return true;
    } catch (const ShapeError&) {
      return false;
    }
  });
}
}  // namespace gen

uint64_t default_seed() {
  const char* env = std::getenv("DG_PROPERTY_SEED");
  return env ? std::strtoull(env, nullptr, 10) : 0;
}

int default_trials() {
  const char* env = std::getenv("DG_PROPERTY_TRIALS");
  if (!env) return 10;
  const int n = std::atoi(env);
  return n > 0 ? n : 10;
}

std::string describe(const OpDef& op, const OpSample& sample) {
  std::string s = op.name + "(";
  for (size_t i = 0; i < sample.inputs.size(); ++i)
    s += fmt::format("{}{} {} {}", i ? ", " : "", op.input_name(i),
                     dtype_name(sample.inputs[i].dtype()), to_string(sample.inputs[i].shape()));
  s += ")";
  for (const auto& [name, value] : sample.attrs)
    s += fmt::format(" {}={}", name, value.to_string());
  return s;
}

// ---- properties -------------------------------------------------------------------------

namespace {

// f(inputs) = the op's differentiable float outputs.
CheckedFunction op_function(const OpDef& op, const Attrs& attrs) {
  return [&op, attrs](const std::vector<Var>& in) {
    std::vector<Var> outs = call(op, in, attrs);
    std::vector<Var> kept;
    for (size_t i = 0; i < outs.size(); ++i)
      if (op.outputs[i].differentiable && is_floating(outs[i].dtype())) kept.push_back(outs[i]);
    return kept;
  };
}

// The inputs a gradient is checked for: floating ones, except buffers (state the op updates).
std::vector<bool> gradient_inputs(const OpDef& op, const std::vector<Tensor>& inputs) {
  std::vector<bool> wrt(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    wrt[i] = is_floating(inputs[i].dtype()) && op.input_spec(i).kind != InputKind::buffer;
  return wrt;
}

bool differentiable(const OpDef& op, const OpSample& sample) {
  if (!op.vjp) return false;
  return std::any_of(sample.inputs.begin(), sample.inputs.end(),
                     [](const Tensor& t) { return is_floating(t.dtype()); });
}

// Central finite differences of <v, f(x)> for every element of every floating input: the
// exact J^T v up to O(eps^2), used as the expected gradient of a written case.
std::vector<Tensor> numeric_vjp(const CheckedFunction& f, std::vector<Tensor> inputs,
                                const std::vector<Tensor>& v, const std::vector<bool>& wrt) {
  const double eps = 1e-6;
  auto project = [&](const std::vector<Tensor>& xs) {
    std::vector<Var> vars(xs.begin(), xs.end());
    Tape tape;
    std::vector<Var> out = f(vars);
    double total = 0;
    for (size_t k = 0; k < out.size(); ++k)
      for (int64_t i = 0; i < out[k].numel(); ++i) total += out[k].value().at(i) * v[k].at(i);
    return total;
  };
  std::vector<Tensor> grads(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!wrt[i]) continue;
    inputs[i] = inputs[i].to(DType::f64).clone();
    grads[i] = Tensor::zeros(inputs[i].shape(), DType::f64);
    double* x = inputs[i].data<double>();
    for (int64_t e = 0; e < inputs[i].numel(); ++e) {
      const double saved = x[e];
      x[e] = saved + eps;
      const double plus = project(inputs);
      x[e] = saved - eps;
      const double minus = project(inputs);
      x[e] = saved;
      grads[i].data<double>()[e] = (plus - minus) / (2 * eps);
    }
  }
  return grads;
}

// Writes the failing sample as a reference case: forward values from the op, gradients from
// finite differences (the truth the VJP missed), tolerances those differences support.
std::string write_failing_case(const OpDef& op, const OpSample& sample, const std::string& dir,
                               const std::string& property) {
  std::vector<Tensor> inputs;
  for (const Tensor& t : sample.inputs)
    inputs.push_back(is_floating(t.dtype()) ? t.to(DType::f64) : t);
  const Attrs attrs = make_attrs(op, sample.attrs);
  Case c;
  c.name = fmt::format("property_{}_{}", op.name, property);
  c.source = "deltagraph property test (expected gradients: central finite differences)";
  CaseNode node{op.name, {}, sample.attrs, {}};
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = op.input_name(i);
    c.inputs.push_back({name, inputs[i], gradient_inputs(op, inputs)[i]});
    node.inputs.push_back(name);
  }
  std::vector<Var> outs;
  {
    std::vector<Var> vars(inputs.begin(), inputs.end());
    outs = call(op, vars, attrs);
  }
  std::vector<Tensor> cotangents;
  for (size_t k = 0; k < outs.size(); ++k) {
    const std::string name = op.outputs[k].name;
    node.outputs.push_back(name);
    c.expected.push_back({name, outs[k].value()});
    if (op.outputs[k].differentiable && is_floating(outs[k].dtype())) {
      Tensor v = outs[k].numel() == 1 && outs[k].dim() == 0
                     ? Tensor::ones({}, DType::f64)
                     : Tensor::randn(outs[k].shape(), 17 + k, DType::f64);
      c.cotangents.push_back({name, v});
      cotangents.push_back(v);
    }
  }
  c.nodes.push_back(node);
  std::vector<Tensor> grads =
      numeric_vjp(op_function(op, attrs), inputs, cotangents, gradient_inputs(op, inputs));
  for (size_t i = 0; i < inputs.size(); ++i)
    if (grads[i].defined()) c.grads.push_back({c.inputs[i].name, grads[i]});
  c.rtol = 1e-5;
  c.atol = 1e-6;
  std::filesystem::create_directories(dir);
  const std::string path = (std::filesystem::path(dir) / (c.name + ".json")).string();
  std::ofstream out(path);
  out << write_case(c);
  if (!out.flush()) fail("property test: cannot write the failing case to '{}'", path);
  return path;
}

// op(batch) == stack of op(sample) for ops whose sampler marks the batched inputs.
CheckResult batch_consistency(const OpDef& op, const OpSample& sample) {
  CheckResult r;
  const Attrs attrs = make_attrs(op, sample.attrs);
  std::vector<Var> whole_in(sample.inputs.begin(), sample.inputs.end());
  std::vector<Var> whole = call(op, whole_in, attrs);
  const int64_t N = sample.inputs[0].shape()[0];
  for (int64_t n = 0; n < N; ++n) {
    std::vector<Var> one;
    for (size_t i = 0; i < sample.inputs.size(); ++i) {
      const Tensor& t = sample.inputs[i];
      if (!sample.batched[i]) {
        one.emplace_back(t);
        continue;
      }
      // Row n of the batch, keeping the batch axis (size 1).
      const int64_t row = t.numel() / N;
      Shape s = t.shape();
      s[0] = 1;
      Tensor piece(s, t.dtype());
      std::memcpy(piece.raw(), static_cast<const char*>(t.raw()) + n * row * dtype_size(t.dtype()),
                  row * dtype_size(t.dtype()));
      one.emplace_back(piece);
    }
    std::vector<Var> part = call(op, one, attrs);
    for (size_t k = 0; k < whole.size(); ++k) {
      const int64_t row = part[k].numel();
      for (int64_t e = 0; e < row; ++e) {
        const double a = whole[k].value().at(n * row + e), b = part[k].value().at(e);
        const double tol = whole[k].dtype() == DType::f32 ? 1e-5 : 1e-12;
        if (!(std::abs(a - b) <= tol * (1 + std::abs(b)))) {
          r.ok = false;
          r.report = fmt::format(
              "batch consistency: output {} sample {} element {}: batched {} vs alone {}", k, n,
              multi_index(part[k].shape(), e), a, b);
          return r;
        }
      }
    }
  }
  return r;
}

// ---- forward mode ---------------------------------------------------------------------------

// One forward-mode check's setup: the op applied (not recorded) to the sample, and a random
// tangent for each input forward mode differentiates (floating, not a buffer).
struct ForwardSetup {
  Attrs attrs;
  std::vector<Var> inputs, outputs, tangents;
};

ForwardSetup forward_setup(const OpDef& op, const OpSample& sample) {
  ForwardSetup f{make_attrs(op, sample.attrs), {}, {}, {}};
  NoGrad no_grad;
  for (const Tensor& t : sample.inputs) f.inputs.emplace_back(t);
  f.outputs = call(op, f.inputs, f.attrs);
  const std::vector<bool> wrt = gradient_inputs(op, sample.inputs);
  for (size_t i = 0; i < sample.inputs.size(); ++i)
    f.tangents.push_back(
        wrt[i] ? Var(Tensor::randn(sample.inputs[i].shape(), 1000 + i, sample.inputs[i].dtype()))
               : Var());
  return f;
}

bool output_checked(const OpDef& op, const ForwardSetup& f, size_t j) {
  return op.outputs[j].differentiable && is_floating(f.outputs[j].dtype());
}

// J t (the op's forward mode) against central differences of f(x + e t).
CheckResult jvp_matches_finite_differences(const OpDef& op, const OpSample& sample) {
  CheckResult r;
  ForwardSetup f = forward_setup(op, sample);
  const std::vector<Var> jt = op_jvp(op, f.attrs, f.inputs, f.outputs, f.tangents);
  const double eps = 1e-6;
  auto shifted = [&](double e) {
    std::vector<Var> in;
    for (size_t i = 0; i < f.inputs.size(); ++i) {
      if (!f.tangents[i].defined()) {
        in.push_back(f.inputs[i]);
        continue;
      }
      Tensor x = f.inputs[i].value().clone();
      double* px = x.data<double>();
      const Tensor& t = f.tangents[i].value();
      for (int64_t k = 0; k < x.numel(); ++k) px[k] += e * t.at(k);
      in.emplace_back(x);
    }
    NoGrad no_grad;
    return call(op, in, f.attrs);
  };
  const std::vector<Var> plus = shifted(eps), minus = shifted(-eps);
  for (size_t j = 0; j < f.outputs.size(); ++j) {
    if (!output_checked(op, f, j)) continue;
    for (int64_t k = 0; k < f.outputs[j].numel(); ++k) {
      const double numeric = (plus[j].value().at(k) - minus[j].value().at(k)) / (2 * eps);
      const double analytic = jt[j].defined() ? jt[j].value().at(k) : 0.0;
      if (!(std::abs(analytic - numeric) <= 1e-6 + 1e-5 * std::abs(numeric))) {
        r.ok = false;
        r.report = fmt::format("jvp: output {} element {}: J t = {} but finite differences give {}",
                               j, multi_index(f.outputs[j].shape(), k), analytic, numeric);
        return r;
      }
    }
  }
  return r;
}

// <u, J v> = <J^T u, v>: the op's forward mode is the transpose of its reverse mode.
CheckResult jvp_is_adjoint_of_vjp(const OpDef& op, const OpSample& sample) {
  CheckResult r;
  ForwardSetup f = forward_setup(op, sample);
  const std::vector<Var> jv = op_jvp(op, f.attrs, f.inputs, f.outputs, f.tangents);
  Tape tape;
  std::vector<Var> in, wrt;
  for (size_t i = 0; i < f.inputs.size(); ++i) {
    in.push_back(f.tangents[i].defined() ? variable(f.inputs[i].value()) : f.inputs[i]);
    if (f.tangents[i].defined()) wrt.push_back(in.back());
  }
  const std::vector<Var> out = call(op, in, f.attrs);
  std::vector<Var> ys, us;
  double forward = 0;
  for (size_t j = 0; j < out.size(); ++j) {
    if (!output_checked(op, f, j) || !out[j].requires_grad()) continue;
    const Tensor u = Tensor::randn(out[j].shape(), 2000 + j, out[j].dtype());
    ys.push_back(out[j]);
    us.emplace_back(u);
    if (jv[j].defined())
      for (int64_t k = 0; k < u.numel(); ++k) forward += u.at(k) * jv[j].value().at(k);
  }
  double reverse = 0;
  if (!ys.empty()) {
    const std::vector<Var> g = grad(ys, wrt, us);
    for (size_t i = 0, w = 0; i < f.inputs.size(); ++i) {
      if (!f.tangents[i].defined()) continue;
      const Tensor& gi = g[w++].value();
      for (int64_t k = 0; k < gi.numel(); ++k) reverse += gi.at(k) * f.tangents[i].value().at(k);
    }
  }
  if (!(std::abs(forward - reverse) <= 1e-10 * (1 + std::abs(forward)))) {
    r.ok = false;
    r.report = fmt::format("jvp_vjp_adjoint: <u, J v> = {} but <J^T u, v> = {}", forward, reverse);
  }
  return r;
}

// An op's own JVP rule agrees with the transposed VJP.
CheckResult jvp_rule_matches_transposed_vjp(const OpDef& op, const OpSample& sample) {
  CheckResult r;
  ForwardSetup f = forward_setup(op, sample);
  const std::vector<Var> rule = op_jvp(op, f.attrs, f.inputs, f.outputs, f.tangents, true);
  const std::vector<Var> transposed = op_jvp(op, f.attrs, f.inputs, f.outputs, f.tangents, false);
  for (size_t j = 0; j < f.outputs.size(); ++j) {
    if (!output_checked(op, f, j)) continue;
    for (int64_t k = 0; k < f.outputs[j].numel(); ++k) {
      const double a = rule[j].defined() ? rule[j].value().at(k) : 0.0;
      const double b = transposed[j].defined() ? transposed[j].value().at(k) : 0.0;
      if (!(std::abs(a - b) <= 1e-10 * (1 + std::abs(b)))) {
        r.ok = false;
        r.report = fmt::format(
            "jvp_rule: output {} element {}: the rule gives {}, the "
            "transposed VJP {}",
            j, multi_index(f.outputs[j].shape(), k), a, b);
        return r;
      }
    }
  }
  return r;
}

// An op that declares its VJP reads only its inputs (OpDef::vjp_reads_outputs = false) gives
// the same gradient of <u, f(x)> when the backward pass has freed its outputs before the VJP
// ran (the outputs feed only a product node, so nothing else holds them) as when the pass
// keeps every value (retain_graph). A VJP that did read them would fail on the freed values.
CheckResult vjp_without_outputs(const OpDef& op, const OpSample& sample) {
  CheckResult r;
  const Attrs attrs = make_attrs(op, sample.attrs);
  const std::vector<bool> wrt = gradient_inputs(op, sample.inputs);
  auto gradients = [&](bool retain_graph) {
    Tape tape;
    std::vector<Var> in, targets;
    for (size_t i = 0; i < sample.inputs.size(); ++i) {
      in.push_back(wrt[i] ? variable(sample.inputs[i]) : Var(sample.inputs[i]));
      if (wrt[i]) targets.push_back(in.back());
    }
    Var loss;
    {
      const std::vector<Var> out = call(op, in, attrs);
      for (size_t j = 0; j < out.size(); ++j) {
        if (!op.outputs[j].differentiable || !out[j].requires_grad()) continue;
        const Var term = sum(mul(out[j], Tensor::randn(out[j].shape(), 3000 + j, out[j].dtype())));
        loss = loss.defined() ? add(loss, term) : term;
      }
    }  // the op's outputs are now held by the products only
    std::vector<Var> g;
    if (loss.defined()) g = grad({loss}, targets, {}, {.retain_graph = retain_graph});
    return g;
  };
  const std::vector<Var> freed = gradients(false), kept = gradients(true);
  for (size_t i = 0; i < kept.size(); ++i)
    for (int64_t k = 0; k < kept[i].numel(); ++k) {
      const double a = freed[i].value().at(k), b = kept[i].value().at(k);
      if (!(a == b || (std::isnan(a) && std::isnan(b)))) {
        r.ok = false;
        r.report = fmt::format(
            "vjp_without_outputs: gradient {} element {} is {} with the outputs freed before the "
            "VJP and {} with them kept (vjp_reads_outputs = false)",
            i, multi_index(kept[i].shape(), k), a, b);
        return r;
      }
    }
  return r;
}

struct Failure {
  OpSample sample;
  std::string report;
};

PropertyResult run_property(const OpDef& op, const std::string& property,
                            const PropertyOptions& options, DType dtype,
                            const std::function<CheckResult(const OpSample&)>& check,
                            const std::function<bool(const OpSample&)>& applies) {
  PropertyResult result{op.name, property};
  std::string last_failure;
  std::string case_file;
  int applicable = 0;
  auto testable = [&] {
    PropertySampler sampler(dtype);
    OpSample sample = op.sample(sampler);
    if (!applies(sample)) RC_DISCARD("the property does not apply to this sample");
    // A sample its own op rejects is not a valid configuration (samplers may over-approximate
    // the shape rule); anything else that throws later is a failure.
    try {
      std::vector<Var> in(sample.inputs.begin(), sample.inputs.end());
      NoGrad no_grad;
      call(op, in, make_attrs(op, sample.attrs));
    } catch (const ShapeError&) {
      RC_DISCARD("the op's shape rule rejects this sample");
    }
    ++applicable;
    CheckResult r;
    try {
      r = check(sample);
    } catch (const Error& e) {
      r.ok = false;
      r.report = std::string("threw: ") + e.what();
    }
    if (!r.ok) {
      // RapidCheck shrinks by rerunning; the last failing run is the minimal one, so each
      // failure overwrites the report and the case file.
      last_failure = describe(op, sample) + "\n" + r.report;
      if (!options.case_dir.empty()) {
        try {
          case_file = write_failing_case(op, sample, options.case_dir, property);
        } catch (const Error& e) {
          last_failure += std::string("\n(could not write the case: ") + e.what() + ")";
        }
      }
    }
    RC_ASSERT(r.ok);
  };
  rc::detail::TestParams params;
  params.maxSuccess = options.trials;
  params.maxSize = 100;
  params.seed = options.seed ? options.seed : std::random_device{}();
  params.disableShrinking = false;
  params.maxDiscardRatio = 100;
  rc::detail::TestMetadata metadata;
  metadata.id = op.name + "/" + property;
  metadata.description = metadata.id;
  const auto outcome = rc::detail::checkTestable(testable, metadata, params);
  result.samples = applicable;
  if (outcome.template is<rc::detail::SuccessResult>()) return result;
  // Gave up: too many samples did not apply (e.g. the batch property only holds for one of
  // softmax_xent's reductions). Every sample that applied passed; none applied means skipped.
  if (outcome.template is<rc::detail::GaveUpResult>() && last_failure.empty()) {
    result.skipped = applicable == 0;
    return result;
  }
  result.ok = false;
  std::ostringstream rc_report;
  rc::detail::printResultMessage(outcome, rc_report);
  result.report =
      fmt::format("{} {} failed (seed {}, replay: dg gradcheck --op {} --seed {}):\n{}\n{}",
                  op.name, property, params.seed, op.name, params.seed,
                  last_failure.empty() ? "" : "minimal failing configuration: " + last_failure,
                  rc_report.str());
  result.case_file = case_file;
  if (!case_file.empty())
    result.report += fmt::format("\nwritten as a reference case: {}", case_file);
  return result;
}

}  // namespace

std::vector<PropertyResult> check_op_properties(const OpDef& op, const PropertyOptions& options) {
  if (!op.sample)
    fail("property tests: op '{}' has no sampler (OpDef::sample), so it is not covered", op.name);
  std::vector<PropertyResult> results;
  auto has_gradient = [&op](const OpSample& s) { return differentiable(op, s); };
  results.push_back(run_property(
      op, "vjp", options, DType::f64,
      [&op](const OpSample& s) {
        return gradcheck(op_function(op, make_attrs(op, s.attrs)), s.inputs,
                         {.wrt = gradient_inputs(op, s.inputs)});
      },
      has_gradient));
  if (!op.vjp_reads_outputs)
    results.push_back(run_property(
        op, "vjp_without_outputs", options, DType::f64,
        [&op](const OpSample& s) { return vjp_without_outputs(op, s); }, has_gradient));
  if (options.order >= 2)
    results.push_back(run_property(
        op, "vjp_of_vjp", options, DType::f64,
        [&op](const OpSample& s) {
          return gradgradcheck(op_function(op, make_attrs(op, s.attrs)), s.inputs,
                               {.wrt = gradient_inputs(op, s.inputs)});
        },
        has_gradient));
  if (options.forward) {
    using Check = CheckResult (*)(const OpDef&, const OpSample&);
    auto on_op = [&op](Check check) {
      return [&op, check](const OpSample& s) { return check(op, s); };
    };
    results.push_back(run_property(op, "jvp", options, DType::f64,
                                   on_op(jvp_matches_finite_differences), has_gradient));
    results.push_back(run_property(op, "jvp_vjp_adjoint", options, DType::f64,
                                   on_op(jvp_is_adjoint_of_vjp), has_gradient));
    if (op.jvp)
      results.push_back(run_property(op, "jvp_rule", options, DType::f64,
                                     on_op(jvp_rule_matches_transposed_vjp), has_gradient));
  }
  if (options.float32)
    results.push_back(run_property(
        op, "float32", options, DType::f64,
        [&op](const OpSample& s) {
          return check_float32(op_function(op, make_attrs(op, s.attrs)), s.inputs);
        },
        has_gradient));
  if (options.batch)
    results.push_back(run_property(
        op, "batch", options, DType::f64,
        [&op](const OpSample& s) { return batch_consistency(op, s); },
        [](const OpSample& s) {
          return !s.batched.empty() && !s.inputs.empty() && s.inputs[0].dim() > 0 &&
                 s.inputs[0].shape()[0] > 0;
        }));
  return results;
}

}  // namespace dg
