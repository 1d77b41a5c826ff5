// The reverse-mode engine. It knows no op: every derivative comes from an OpDef's VJP.
//
// 1. Collect the nodes reachable from the outputs through values that require a gradient, in
//    topological order (depth-first post-order: producers before consumers).
// 2. Mark the nodes on a path to a requested gradient ("needed"); others are never visited.
// 3. Seed each output with its cotangent, then walk the order backwards: call each needed
//    node's VJP with the cotangents of its outputs and add what it returns to the cotangents
//    of its inputs (fan-out is a sum).
// 4. Unless the graph is retained, free each node's saved inputs right after its VJP ran.
// With create_graph the pass is itself recorded; every node it records carries a
// BackwardOrigin (graph.h) naming the node whose VJP made it, for tools that draw it.
#include <unordered_map>

#include "anomaly_checks.h"
#include "deltagraph/autodiff.h"
#include "deltagraph/graph.h"
#include "deltagraph/ops.h"
#include "deltagraph/tape.h"
#include "recording.h"

namespace dg {

namespace {

struct NodeState {
  bool needed = false;
  std::vector<Var> grads;  // cotangent accumulated for each output
};

// Adds `contribution` to `slot`; the sum is itself recorded when the pass records.
void accumulate(Var& slot, const Var& contribution) {
  if (!contribution.defined()) return;
  slot = slot.defined() ? add(slot, contribution) : contribution;
}

class Pass {
 public:
  Pass(const std::vector<Var>& outputs, const std::vector<Var>& cotangents, GradOptions options,
       const char* who)
      : outputs_(outputs), options_(options), who_(who) {
    if (options_.create_graph) options_.retain_graph = true;
    if (outputs.empty()) fail("{}: no outputs to differentiate", who);
    if (!cotangents.empty() && cotangents.size() != outputs.size())
      fail("{}: {} outputs but {} cotangents; give one per output or none", who, outputs.size(),
           cotangents.size());
    bool any_requires = false;
    for (size_t k = 0; k < outputs.size(); ++k) {
      if (!outputs[k].defined()) fail("{}: output {} is an undefined Var", who, k);
      any_requires |= outputs[k].requires_grad();
      Var seed = k < cotangents.size() ? cotangents[k] : Var();
      if (!seed.defined()) {
        if (outputs[k].numel() != 1)
          fail("{}: output {} has shape {}; a non-scalar output needs a cotangent", who, k,
               outputs[k].shape());
        seed = Var(Tensor::ones(outputs[k].shape(), outputs[k].dtype()));
      } else if (!(seed.shape() == outputs[k].shape()) || seed.dtype() != outputs[k].dtype()) {
        fail("{}: cotangent {} is {} {} but output {} is {} {}; they must match", who, k,
             seed.dtype(), seed.shape(), k, outputs[k].dtype(), outputs[k].shape());
      }
      seeds_.push_back(seed);
    }
    if (!any_requires)
      fail(
          "{}: no output depends on a differentiable value recorded on a tape (were the ops run "
          "while a dg::Tape was active, on a Param or dg::variable?)",
          who);
    collect();
  }

  // Marks which nodes lead to the targets; `all_leaves` targets every differentiable leaf.
  void mark_needed(const std::vector<VarImpl*>& targets, bool all_leaves) {
    for (VarImpl* t : targets) targets_.emplace(t, true);
    all_leaves_ = all_leaves;
    for (const auto& node : order_) {
      NodeState& s = states_[node.get()];
      for (const Var& in : node->inputs)
        if (in.requires_grad() && input_needed(in.impl())) s.needed = true;
    }
  }

  void run() {
    std::unique_ptr<NoGrad> no_grad;
    std::unique_ptr<ForceRecording> force;
    if (options_.create_graph)
      force = std::make_unique<ForceRecording>();
    else
      no_grad = std::make_unique<NoGrad>();
    // Whatever this pass records (with create_graph) is marked as backward-pass work, so that
    // tools can tell the backward graph from the forward one.
    RecordingBackward marking({.in_backward_pass = true});

    for (size_t k = 0; k < outputs_.size(); ++k)
      if (outputs_[k].requires_grad()) accumulate(slot(outputs_[k].impl()), seeds_[k]);

    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
      Node& node = **it;
      NodeState& s = states_[&node];
      bool any_grad =
          std::any_of(s.grads.begin(), s.grads.end(), [](auto& g) { return g.defined(); });
      if (s.needed && any_grad) backpropagate(node, s);
      if (!options_.retain_graph) node.release();
      it->reset();  // drop our hold: what nothing else needs is freed now
    }
  }

  Var& slot(VarImpl* v) {
    if (v->producer) {
      auto it = states_.find(v->producer);
      if (it != states_.end()) return it->second.grads[v->output_index];
    }
    return leaf_grads_[v];
  }

  // The accumulated gradient of a value (undefined if none reached it).
  Var result(VarImpl* v) {
    if (v->producer) {
      auto it = states_.find(v->producer);
      return it == states_.end() ? Var() : it->second.grads[v->output_index];
    }
    auto it = leaf_grads_.find(v);
    return it == leaf_grads_.end() ? Var() : it->second;
  }

  const std::unordered_map<VarImpl*, Var>& leaf_grads() const { return leaf_grads_; }

 private:
  bool input_needed(VarImpl* v) const {
    if (targets_.count(v)) return true;
    if (v->producer) {
      auto it = states_.find(v->producer);
      return it != states_.end() && it->second.needed;
    }
    return all_leaves_;
  }

  // Depth-first post-order from the outputs, without recursion (graphs can be deep).
  void collect() {
    std::vector<std::pair<Node*, size_t>> stack;
    auto visit = [&](const Var& v) {
      Node* p = v.impl()->producer;
      if (!p || !v.requires_grad() || states_.count(p)) return;
      states_[p].grads.resize(p->outputs.size());
      stack.emplace_back(p, 0);
    };
    for (const Var& out : outputs_) {
      visit(out);
      while (!stack.empty()) {
        auto& [node, next] = stack.back();
        if (next < node->inputs.size()) {
          visit(node->inputs[next++]);
          continue;
        }
        if (node->released)
          fail(
              "{}: the graph was freed by an earlier backward pass (op '{}' recorded at {}:{}); "
              "pass retain_graph = true to differentiate it again",
              who_, node->op->name, node->location.file_name(), node->location.line());
        order_.push_back(node->shared_from_this());
        stack.pop_back();
      }
    }
  }

  void backpropagate(Node& node, NodeState& s) {
    const OpDef& op = *node.op;
    std::vector<Var> outputs, grad_outputs;
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      outputs.push_back(node.output(static_cast<int>(i)));
      if (!op.outputs[i].differentiable || !is_floating(node.outputs[i].value.dtype()))
        grad_outputs.emplace_back();
      else if (s.grads[i].defined())
        grad_outputs.push_back(s.grads[i]);
      else
        grad_outputs.emplace_back(
            Tensor::zeros(node.outputs[i].value.shape(), node.outputs[i].value.dtype()));
    }
    std::unique_ptr<bool[]> needs(new bool[node.inputs.size()]);
    bool any = false;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const Var& in = node.inputs[i];
      needs[i] = in.requires_grad() && input_needed(in.impl());
      any |= needs[i];
    }
    if (!any) return;
    VjpContext ctx{op,      node.attrs,   node.inputs,
                   outputs, grad_outputs, std::span<const bool>(needs.get(), node.inputs.size())};
    std::vector<Var> input_grads;
    {
      RecordingBackward marking({.in_backward_pass = true, .vjp_op = &op, .vjp_of = node.sequence});
      if (DetectAnomaly::enabled()) {
        AnomalyVjpScope scope(&node);
        input_grads = op.vjp(ctx);
        check_vjp_results(node, grad_outputs, input_grads);
      } else {
        input_grads = op.vjp(ctx);
      }
    }
    // One entry per declared input; entries for optional inputs that were not given are ignored.
    if (input_grads.size() > op.inputs.size())
      fail("{}: the VJP of '{}' returned {} gradients for {} inputs", who_, op.name,
           input_grads.size(), op.inputs.size());
    for (size_t i = 0; i < std::min(input_grads.size(), node.inputs.size()); ++i) {
      if (!needs[i] || !input_grads[i].defined()) continue;
      const Var& in = node.inputs[i];
      if (!(input_grads[i].shape() == in.shape()) || input_grads[i].dtype() != in.dtype())
        fail("{}: the VJP of '{}' returned {} {} for input '{}', which is {} {}", who_, op.name,
             input_grads[i].dtype(), input_grads[i].shape(), op.inputs[i].name, in.dtype(),
             in.shape());
      accumulate(slot(in.impl()), input_grads[i]);
    }
  }

  const std::vector<Var>& outputs_;
  std::vector<Var> seeds_;
  GradOptions options_;
  const char* who_;
  std::vector<std::shared_ptr<Node>> order_;
  std::unordered_map<Node*, NodeState> states_;
  std::unordered_map<VarImpl*, bool> targets_;
  std::unordered_map<VarImpl*, Var> leaf_grads_;
  bool all_leaves_ = false;
};

template <class T>
void add_into(Tensor& dst, const Tensor& src) {
  T* d = dst.data<T>();
  const T* s = src.data<T>();
  for (int64_t i = 0, n = dst.numel(); i < n; ++i) d[i] += s[i];
}

}  // namespace

std::vector<Var> grad(const std::vector<Var>& outputs, const std::vector<Var>& wrt,
                      const std::vector<Var>& cotangents, GradOptions options) {
  std::vector<VarImpl*> targets;
  for (size_t i = 0; i < wrt.size(); ++i) {
    if (!wrt[i].defined()) fail("grad: wrt[{}] is an undefined Var", i);
    if (!wrt[i].requires_grad())
      fail(
          "grad: wrt[{}] ({} {}{}) does not require a gradient; make it a dg::Param or "
          "dg::variable, or take it from an op recorded on a tape",
          i, wrt[i].dtype(), wrt[i].shape(),
          wrt[i].name().empty() ? "" : " '" + wrt[i].name() + "'");
    targets.push_back(wrt[i].impl());
  }
  Pass pass(outputs, cotangents, options, "grad");
  pass.mark_needed(targets, false);
  pass.run();
  std::vector<Var> result;
  for (const Var& w : wrt) {
    Var g = pass.result(w.impl());
    result.push_back(g.defined() ? g : Var(Tensor::zeros(w.shape(), w.dtype())));
  }
  return result;
}

std::vector<Var> grad(const Var& output, const std::vector<Var>& wrt, GradOptions options) {
  return grad(std::vector<Var>{output}, wrt, {}, options);
}

void backward(const Var& loss, const Var& cotangent, GradOptions options) {
  std::vector<Var> outputs{loss};
  std::vector<Var> cotangents;
  if (cotangent.defined()) cotangents.push_back(cotangent);
  Pass pass(outputs, cotangents, options, "backward");
  pass.mark_needed({}, true);
  pass.run();
  for (const auto& [leaf, g] : pass.leaf_grads()) {
    if (!g.defined()) continue;
    if (!leaf->grad.defined()) {
      leaf->grad = g.value().clone();
    } else if (leaf->grad.dtype() == DType::f32) {
      add_into<float>(leaf->grad, g.value());
    } else {
      add_into<double>(leaf->grad, g.value());
    }
  }
}

}  // namespace dg
