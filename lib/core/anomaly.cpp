// Anomaly mode: the checks call() and the engine run while a DetectAnomaly scope is open.
#include "deltagraph/core/anomaly.h"

#include <cmath>

#include "anomaly_checks.h"
#include "deltagraph/core/graph.h"
#include "deltagraph/core/tape.h"

namespace dg {

namespace {
struct AnomalyState {
  int depth = 0;
  const Node* vjp_of = nullptr;  // the node whose VJP is running, if any
};
thread_local AnomalyState anomaly;

struct Scan {
  int64_t nan = 0, inf = 0;
  double min = INFINITY, max = -INFINITY;
  int64_t first_bad = -1;
};

Scan scan(const Tensor& t) {
  Scan s;
  if (!t.defined() || !is_floating(t.dtype())) return s;
  auto visit = [&](auto* p) {
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double v = static_cast<double>(p[i]);
      if (std::isnan(v))
        ++s.nan;
      else if (std::isinf(v))
        ++s.inf;
      else {
        s.min = std::min(s.min, v);
        s.max = std::max(s.max, v);
        continue;
      }
      if (s.first_bad < 0) s.first_bad = i;
    }
  };
  if (t.dtype() == DType::f32)
    visit(t.data<float>());
  else
    visit(t.data<double>());
  return s;
}

bool finite(const Scan& s) { return s.nan == 0 && s.inf == 0; }

std::string describe_values(const Tensor& t) {
  if (!t.defined()) return "undefined";
  if (!is_floating(t.dtype()))
    return fmt::format("{} {}", dtype_name(t.dtype()), to_string(t.shape()));
  const Scan s = scan(t);
  std::string range =
      s.min <= s.max ? fmt::format("values in [{:.6g}, {:.6g}]", s.min, s.max) : "no finite value";
  if (s.nan || s.inf) range += fmt::format(", {} NaN, {} Inf", s.nan, s.inf);
  return fmt::format("{} {} {}", dtype_name(t.dtype()), to_string(t.shape()), range);
}

std::string where(const SourceLocation& loc) {
  return fmt::format("{}:{} ({})", loc.file_name(), loc.line(), loc.function_name());
}

std::string bad_values(const Scan& s, const Tensor& t) {
  return fmt::format("{} NaN and {} Inf (first at {})", s.nan, s.inf,
                     multi_index(t.shape(), s.first_bad));
}

}  // namespace

DetectAnomaly::DetectAnomaly() { ++anomaly.depth; }
DetectAnomaly::~DetectAnomaly() { --anomaly.depth; }
bool DetectAnomaly::enabled() { return anomaly.depth > 0; }

AnomalyVjpScope::AnomalyVjpScope(const Node* node) : previous_(anomaly.vjp_of) {
  anomaly.vjp_of = node;
}
AnomalyVjpScope::~AnomalyVjpScope() { anomaly.vjp_of = previous_; }

void check_op_outputs(const OpDef& op, const Attrs& attrs, std::span<const Var> inputs,
                      std::span<const Tensor> outputs, const SourceLocation& location) {
  for (size_t k = 0; k < outputs.size(); ++k) {
    const Scan out = scan(outputs[k]);
    if (finite(out)) continue;
    std::string inputs_text;
    const Var* carrier = nullptr;  // an input that already held a non-finite value
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& t = inputs[i].value();
      inputs_text += fmt::format("\n    {} = {}", op.input_name(i), describe_values(t));
      if (!carrier && !finite(scan(t))) carrier = &inputs[i];
    }
    std::vector<Shape> shapes;
    for (const Var& v : inputs) shapes.push_back(v.shape());
    const std::string label = op_label(op, attrs, shapes);
    const Tape* tape = Tape::current();
    const std::string position =
        tape ? fmt::format("op {} on the tape", tape->size() + 1) : "not on a tape";
    std::string pass = "forward pass";
    if (anomaly.vjp_of)
      pass = fmt::format(
          "backward pass, inside the VJP of '{}' (recorded at {})",
          op_label(*anomaly.vjp_of->op, anomaly.vjp_of->attrs, anomaly.vjp_of->input_shapes()),
          where(anomaly.vjp_of->location));
    if (carrier) {
      // Every op is checked, so a non-finite input can only have come from outside the graph.
      throw AnomalyError(fmt::format(
          "anomaly: '{}' received a non-finite input in the {} (called at {}): input '{}' holds "
          "{}; it "
          "entered as a leaf{}, no recorded op created it.\n  inputs:{}",
          label, pass, where(location), op.input_name(carrier - inputs.data()),
          bad_values(scan(carrier->value()), carrier->value()),
          carrier->name().empty() ? "" : " named '" + carrier->name() + "'", inputs_text));
    }
    throw AnomalyError(
        fmt::format("anomaly: '{}' created {} in output '{}' during the {}, {}, called at {}.\n  "
                    "inputs (all finite):{}",
                    label, bad_values(out, outputs[k]), op.outputs[k].name, pass, position,
                    where(location), inputs_text));
  }
}

void check_vjp_results(const Node& node, std::span<const Var> grad_outputs,
                       std::span<const Var> results) {
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].defined()) continue;
    const Scan s = scan(results[i].value());
    if (finite(s)) continue;
    std::string cotangents;
    for (size_t k = 0; k < grad_outputs.size(); ++k)
      if (grad_outputs[k].defined())
        cotangents += fmt::format("\n    d{} = {}", node.op->outputs[k].name,
                                  describe_values(grad_outputs[k].value()));
    throw AnomalyError(
        fmt::format("anomaly: the VJP of '{}' (recorded at {}) returned {} for input '{}' in the "
                    "backward pass; "
                    "the cotangents it received:{}",
                    op_label(*node.op, node.attrs, node.input_shapes()), where(node.location),
                    bad_values(s, results[i].value()), node.op->input_name(i), cotangents));
  }
}

}  // namespace dg
