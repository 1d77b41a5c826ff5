// Forward mode and the transforms built on it (include/deltagraph/core/forward.h).
//
// jvp() records f once, then walks the recorded ops from the primals to the outputs, giving
// each op's outputs their tangents from its inputs' (OpDef::jvp, or the transposed VJP). Core
// knows no op by type, so the little arithmetic it needs (an inner product) goes through the
// registry by name, as the reverse-mode engine's sums do.
#include "deltagraph/core/forward.h"

#include <unordered_map>
#include <unordered_set>

#include "deltagraph/core/autodiff.h"
#include "deltagraph/core/error.h"
#include "deltagraph/core/graph.h"
#include "deltagraph/core/tape.h"
#include "recording.h"

namespace dg {

namespace {

// <a, b> = sum(a * b) over every element, as a scalar Var (recorded when recording is on).
Var inner(const Var& a, const Var& b) {
  static const OpDef& mul = find_op("mul");
  static const OpDef& sum = find_op("sum");
  static const Attrs mul_attrs = make_attrs(mul, {});
  static const Attrs sum_attrs = make_attrs(sum, {});
  const Var operands[2] = {a, b};
  const Var product[1] = {call_first(mul, operands, mul_attrs)};
  return call_first(sum, product, sum_attrs);
}

Var plus(const Var& a, const Var& b) {
  static const OpDef& add = find_op("add");
  static const Attrs add_attrs = make_attrs(add, {});
  const Var operands[2] = {a, b};
  return call_first(add, operands, add_attrs);
}

bool gets_tangent(const OpDef& op, size_t i, const Var& input, const Var& tangent) {
  return tangent.defined() && is_floating(input.dtype()) &&
         op.input_spec(i).kind != InputKind::buffer;
}

bool output_differentiable(const OpDef& op, size_t j, const Var& output) {
  return j < op.outputs.size() && op.outputs[j].differentiable && is_floating(output.dtype());
}

// J t by the transpose of the VJP: with u a variable cotangent per output, the VJP gives
// g_i = J_i^T u, linear in u; s = sum_i <g_i, t_i> = <u, J t>, so ds/du = J t. Inputs and
// outputs enter as constants: only u is differentiated.
std::vector<Var> transposed_vjp(const OpDef& op, const Attrs& attrs, std::span<const Var> inputs,
                                std::span<const Var> outputs, std::span<const Var> tangents,
                                const void* context) {
  Tape tape;
  ForceRecording recording;
  std::vector<Var> in, out, cotangents(outputs.size());
  for (const Var& v : inputs) in.emplace_back(v.value());
  for (const Var& v : outputs) out.emplace_back(v.value());
  std::vector<Var> wrt;
  for (size_t j = 0; j < outputs.size(); ++j)
    if (output_differentiable(op, j, outputs[j])) {
      cotangents[j] = variable(Tensor::zeros(outputs[j].shape(), outputs[j].dtype()));
      wrt.push_back(cotangents[j]);
    }
  std::vector<Var> results(outputs.size());
  if (wrt.empty()) return results;
  SmallVector<bool, 4> needs;
  needs.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    needs[i] = i < tangents.size() && gets_tangent(op, i, inputs[i], tangents[i]);
  const VjpContext ctx{op, attrs, in, out, cotangents, needs, context};
  const std::vector<Var> g = op.vjp(ctx);
  Var s;
  for (size_t i = 0; i < std::min(g.size(), inputs.size()); ++i) {
    if (!needs[i] || !g[i].defined()) continue;
    const Var term = inner(g[i], Var(tangents[i].value()));
    s = s.defined() ? plus(s, term) : term;
  }
  if (!s.defined() || !s.requires_grad()) return results;  // J t = 0
  const std::vector<Var> grads = grad({s}, wrt);
  for (size_t j = 0, k = 0; j < outputs.size(); ++j)
    if (cotangents[j].defined()) results[j] = Var(grads[k++].value());
  return results;
}

}  // namespace

// Producers before consumers: the recorded ops between the outputs and whatever they start
// from (a depth-first post-order, without recursion).
std::vector<Node*> recorded_order(const std::vector<Var>& outputs) {
  std::vector<Node*> order;
  std::unordered_set<const Node*> seen;
  std::vector<std::pair<Node*, size_t>> stack;
  for (const Var& y : outputs) {
    Node* p = y.impl()->producer;
    if (!p || !seen.insert(p).second) continue;
    stack.emplace_back(p, 0);
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next < node->inputs.size()) {
        Node* q = node->inputs[next++].impl()->producer;
        if (q && seen.insert(q).second) stack.emplace_back(q, 0);
        continue;
      }
      order.push_back(node);
      stack.pop_back();
    }
  }
  return order;
}

namespace {

// `value` with every element 0 but element `index`, 1 (float64).
Tensor one_hot(const Shape& shape, int64_t index) {
  Tensor t = Tensor::zeros(shape, DType::f64);
  t.data<double>()[index] = 1;
  return t;
}

}  // namespace

std::vector<Var> op_jvp(const OpDef& op, const Attrs& attrs, std::span<const Var> inputs,
                        std::span<const Var> outputs, std::span<const Var> tangents, bool use_rule,
                        const void* context) {
  bool any = false;
  for (size_t i = 0; i < inputs.size() && i < tangents.size(); ++i)
    any |= gets_tangent(op, i, inputs[i], tangents[i]);
  std::vector<Var> results(outputs.size());
  if (!any) return results;
  if (use_rule && op.jvp) {
    // The rule sees only the tangents the op can take (none for int64 inputs and buffers).
    std::vector<Var> usable(inputs.size());
    for (size_t i = 0; i < inputs.size() && i < tangents.size(); ++i)
      if (gets_tangent(op, i, inputs[i], tangents[i])) usable[i] = tangents[i];
    results = op.jvp(JvpContext{op, attrs, inputs, outputs, usable, context});
    results.resize(outputs.size());
  } else {
    if (!op.vjp)
      fail("jvp: op '{}' has neither a JVP rule nor a VJP, so it has no forward mode", op.name);
    results = transposed_vjp(op, attrs, inputs, outputs, tangents, context);
  }
  for (size_t j = 0; j < outputs.size(); ++j) {
    if (!results[j].defined()) continue;
    if (!output_differentiable(op, j, outputs[j])) {
      results[j] = Var();
      continue;
    }
    if (!(results[j].shape() == outputs[j].shape()) || results[j].dtype() != outputs[j].dtype())
      fail("jvp: the JVP of '{}' gave {} {} for output {}, which is {} {}", op.name,
           results[j].dtype(), results[j].shape(), j, outputs[j].dtype(), outputs[j].shape());
  }
  return results;
}

JvpResult jvp(const VarFunction& f, const std::vector<Tensor>& primals,
              const std::vector<Tensor>& tangents, bool use_rules) {
  if (primals.size() != tangents.size())
    fail("jvp: {} primals but {} tangents; give one tangent per primal", primals.size(),
         tangents.size());
  for (size_t i = 0; i < primals.size(); ++i)
    if (!(primals[i].shape() == tangents[i].shape()) || primals[i].dtype() != tangents[i].dtype())
      fail("jvp: tangent {} is {} {} but primal {} is {} {}; they must match", i,
           tangents[i].dtype(), tangents[i].shape(), i, primals[i].dtype(), primals[i].shape());
  JvpResult result;
  std::unordered_map<const VarImpl*, Var> tangent_of;
  {
    Tape tape;
    ForceRecording recording;  // f is recorded even inside a NoGrad scope
    std::vector<Var> xs;
    for (size_t i = 0; i < primals.size(); ++i) {
      xs.push_back(variable(primals[i]));
      tangent_of[xs.back().impl()] = Var(tangents[i]);
    }
    result.outputs = f(xs);
  }
  NoGrad no_grad;  // the tangents' arithmetic is not recorded
  for (Node* node : recorded_order(result.outputs)) {
    std::vector<Var> ts(node->inputs.size()), outs;
    bool any = false;
    for (size_t i = 0; i < node->inputs.size(); ++i) {
      auto it = tangent_of.find(node->inputs[i].impl());
      if (it != tangent_of.end()) ts[i] = it->second, any = true;
    }
    if (!any) continue;
    if (node->released)
      fail("jvp: op '{}' was differentiated inside f without retain_graph, which freed its values",
           node->op->name);
    for (size_t j = 0; j < node->outputs.size(); ++j)
      outs.push_back(node->output(static_cast<int>(j)));
    const std::vector<Var> out_t =
        op_jvp(*node->op, node->attrs, node->inputs, outs, ts, use_rules, node->context.get());
    for (size_t j = 0; j < out_t.size(); ++j)
      if (out_t[j].defined()) tangent_of[&node->outputs[j]] = out_t[j];
  }
  for (const Var& y : result.outputs) {
    auto it = tangent_of.find(y.impl());
    result.tangents.push_back(it != tangent_of.end() ? it->second
                                                     : Var(Tensor::zeros(y.shape(), y.dtype())));
  }
  return result;
}

Tensor hvp(const std::function<Var(const Var&)>& f, const Tensor& x, const Tensor& v) {
  auto gradient = [&f](const std::vector<Var>& in) {
    const Var y = f(in[0]);
    if (y.numel() != 1) fail("hvp: f must return a scalar, got shape {}", y.shape());
    return grad(std::vector<Var>{y}, {in[0]}, {}, {.create_graph = true});
  };
  return jvp(gradient, {x}, {v}).tangents[0].value();
}

Tensor jacfwd(const std::function<Var(const Var&)>& f, const Tensor& x) {
  const auto f1 = [&f](const std::vector<Var>& in) { return std::vector<Var>{f(in[0])}; };
  Tensor jacobian;
  const int64_t n = x.numel();
  for (int64_t k = 0; k < n; ++k) {
    const Tensor column = jvp(f1, {x}, {one_hot(x.shape(), k).to(x.dtype())}).tangents[0].value();
    if (!jacobian.defined()) {
      Shape shape = column.shape();
      for (int64_t d : x.shape()) shape.push_back(d);
      jacobian = Tensor::zeros(shape, DType::f64);
    }
    double* J = jacobian.data<double>();
    for (int64_t i = 0; i < column.numel(); ++i) J[i * n + k] = column.at(i);
  }
  return jacobian.defined() ? jacobian.to(x.dtype()) : jacobian;
}

Tensor jacrev(const std::function<Var(const Var&)>& f, const Tensor& x) {
  Tape tape;
  ForceRecording recording;
  const Var xv = variable(x);
  const Var y = f(xv);
  Shape shape = y.shape();
  for (int64_t d : x.shape()) shape.push_back(d);
  Tensor jacobian = Tensor::zeros(shape, DType::f64);
  double* J = jacobian.data<double>();
  const int64_t n = x.numel();
  for (int64_t i = 0; i < y.numel(); ++i) {
    if (!y.requires_grad()) break;  // f does not depend on x: zeros
    const Tensor row =
        grad({y}, {xv}, {Var(one_hot(y.shape(), i).to(y.dtype()))}, {.retain_graph = true})[0]
            .value();
    for (int64_t k = 0; k < n; ++k) J[i * n + k] = row.at(k);
  }
  return jacobian.to(x.dtype());
}

Tensor jacobian(const std::function<Var(const Var&)>& f, const Tensor& x) {
  int64_t outputs;
  {
    NoGrad no_grad;
    outputs = f(Var(x)).numel();
  }
  // Forward mode costs a pass per input element, reverse mode one per output element.
  return x.numel() <= outputs ? jacfwd(f, x) : jacrev(f, x);
}

Tensor hessian(const std::function<Var(const Var&)>& f, const Tensor& x) {
  const int64_t n = x.numel();
  Shape shape = x.shape();
  for (int64_t d : x.shape()) shape.push_back(d);
  Tensor h = Tensor::zeros(shape, DType::f64);
  double* H = h.data<double>();
  for (int64_t k = 0; k < n; ++k) {
    const Tensor column = hvp(f, x, one_hot(x.shape(), k).to(x.dtype()));
    for (int64_t i = 0; i < n; ++i) H[i * n + k] = column.at(i);
  }
  return h.to(x.dtype());
}

}  // namespace dg
