// The reverse-mode engine. Every derivative comes from an OpDef's VJP; the only op the engine
// names is `add`, looked up through the registry like any other, to sum the contributions of a
// value used several times (so that sum is recorded too when the pass records).
//
// 1. Collect the nodes reachable from the outputs through values that require a gradient, in
//    topological order (depth-first post-order: producers before consumers).
// 2. Mark the nodes on a path to a requested gradient ("needed"); others are never visited.
// 3. Seed each output with its cotangent, then walk the order backwards: call each needed
//    node's VJP with the cotangents of its outputs and add what it returns to the cotangents
//    of its inputs (fan-out is a sum).
// 4. Unless the graph is retained, free each node's saved inputs right after its VJP ran; its
//    cotangents go at the same moment (every consumer of a value comes later in the order, so
//    its cotangent is complete, and used, when its producer's turn comes).
// With create_graph the pass is itself recorded; every node it records carries a
// BackwardOrigin (graph.h) naming the node whose VJP made it, for tools that draw it.
//
// Cost: the per-pass state lives in flat arrays indexed by a slot number that each node carries
// while the pass owns it (Node::pass_id, Node::pass_slot), so finding a node's state is a field
// read, not a hash lookup; per node the engine allocates nothing beyond what the VJP does.
// Leaves (Params, shared between threads) carry no pass state: they get a small table here.
#include <optional>
#include <unordered_map>

#include "anomaly_checks.h"
#include "deltagraph/core/autodiff.h"
#include "deltagraph/core/graph.h"
#include "deltagraph/core/op.h"
#include "deltagraph/core/small_vector.h"
#include "deltagraph/core/tape.h"
#include "recording.h"

namespace dg {

namespace {

// Adds `contribution` to `slot`; the sum is itself recorded when the pass records.
void accumulate(Var& slot, Var contribution) {
  if (!contribution.defined()) return;
  if (!slot.defined()) {
    slot = std::move(contribution);
    return;
  }
  static const OpDef& add = find_op("add");
  const Var operands[2] = {slot, std::move(contribution)};
  slot = call_first(add, operands, Attrs(add, {}));
}

// Pass ids are never reused, so a stale id left on a node can never be mistaken for ours.
std::atomic<uint64_t> next_pass_id{1};

// The gradients accumulated for leaves, and which leaves are targets. Leaves are few (the
// parameters a model uses), so a linear scan does until there are many.
class LeafTable {
 public:
  struct Entry {
    VarImpl* leaf;
    Var grad;
    bool target;
    // With a ready hook: collected nodes that take this leaf as an input and have not run yet.
    uint32_t pending = 0;
    bool delivered = false;  // backward(): already added into the leaf's .grad
  };

  Entry* find(VarImpl* v) {
    if (index_) {
      auto it = index_->find(v);
      return it == index_->end() ? nullptr : &entries_[it->second];
    }
    for (Entry& e : entries_)
      if (e.leaf == v) return &e;
    return nullptr;
  }
  Entry& find_or_add(VarImpl* v) {
    if (Entry* e = find(v)) return *e;
    entries_.push_back({v, Var(), false, 0, false});
    if (index_) {
      index_->emplace(v, entries_.size() - 1);
    } else if (entries_.size() > kScanLimit) {
      index_.emplace();
      for (size_t i = 0; i < entries_.size(); ++i) index_->emplace(entries_[i].leaf, i);
    }
    return entries_.back();
  }
  std::vector<Entry>& entries() { return entries_; }

 private:
  static constexpr size_t kScanLimit = 16;
  std::vector<Entry> entries_;
  std::optional<std::unordered_map<VarImpl*, size_t>> index_;
};

// One node's state for a pass.
struct Slot {
  std::shared_ptr<Node> node;  // held until its VJP ran; null after
  uint32_t first_grad = 0;     // its outputs' cotangents: grads[first_grad + output_index]
  bool needed = false;         // on a path to a target
  bool has_target = false;     // one of its outputs is a target (grad with respect to it)
};

// A pass's arrays. Kept for the thread's next pass (a training step differentiates a graph of
// the same size every time): growing them anew costs page faults on every step.
struct Scratch {
  std::vector<Slot> slots;      // in order of discovery
  std::vector<uint32_t> order;  // slot numbers, producers before consumers
  std::vector<Var> grads;       // every collected node's output cotangents, side by side
  std::vector<std::pair<Node*, size_t>> stack;  // the depth-first walk
};
// Larger arrays than this go back to the heap after the pass.
constexpr size_t kMaxKeptSlots = size_t{1} << 20;
thread_local std::unique_ptr<Scratch> spare_scratch;

std::unique_ptr<Scratch> take_scratch() {
  return spare_scratch ? std::move(spare_scratch) : std::make_unique<Scratch>();
}

void give_back(std::unique_ptr<Scratch> scratch) {
  scratch->slots.clear();
  scratch->order.clear();
  scratch->grads.clear();
  scratch->stack.clear();
  if (scratch->slots.capacity() <= kMaxKeptSlots && scratch->grads.capacity() <= kMaxKeptSlots &&
      scratch->stack.capacity() <= kMaxKeptSlots)
    spare_scratch = std::move(scratch);
}

template <class T>
void add_into(Tensor& dst, const Tensor& src) {
  T* d = dst.data<T>();
  const T* s = src.data<T>();
  for (int64_t i = 0, n = dst.numel(); i < n; ++i) d[i] += s[i];
}

class Pass {
 public:
  // `targets`: the values whose gradients are wanted; `all_leaves`: every differentiable leaf
  // too (backward()).
  // The pass holds `outputs` and `cotangents` until the cotangents are seeded, no longer: with
  // the caller's references gone too, they go when the VJPs no longer need them.
  Pass(std::vector<Var> given_outputs, std::vector<Var> cotangents, GradOptions options,
       const char* who, const std::vector<VarImpl*>& targets, bool all_leaves)
      : outputs_(std::move(given_outputs)), options_(options), who_(who), all_leaves_(all_leaves) {
    const std::vector<Var>& outputs = outputs_;
    if (options_.create_graph) options_.retain_graph = true;
    if (outputs.empty()) fail("{}: no outputs to differentiate", who);
    if (!cotangents.empty() && cotangents.size() != outputs.size())
      fail("{}: {} outputs but {} cotangents; give one per output or none", who, outputs.size(),
           cotangents.size());
    bool any_requires = false;
    for (size_t k = 0; k < outputs.size(); ++k) {
      if (!outputs[k].defined()) fail("{}: output {} is an undefined Var", who, k);
      any_requires |= outputs[k].requires_grad();
      Var seed = k < cotangents.size() ? std::move(cotangents[k]) : Var();
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
    targets_ = targets;
    results_.assign(targets.size(), Var());
    for (VarImpl* t : targets) {
      if (t->producer)
        node_targets_.push_back(t);
      else
        leaves_.find_or_add(t).target = true;
    }
    try {
      collect();
    } catch (...) {
      unclaim_all();  // no destructor runs when a constructor throws
      throw;
    }
  }

  ~Pass() {
    unclaim_all();
    give_back(std::move(scratch_));
  }

  void run() {
    std::optional<NoGrad> no_grad;
    std::optional<ForceRecording> force;
    if (options_.create_graph)
      force.emplace();
    else
      no_grad.emplace();
    // Whatever this pass records (with create_graph) is marked as backward-pass work, so that
    // tools can tell the backward graph from the forward one.
    RecordingBackward marking({.in_backward_pass = true});

    for (size_t k = 0; k < outputs_.size(); ++k)
      if (outputs_[k].requires_grad()) accumulate(slot(outputs_[k].impl()), seeds_[k]);
    if (!options_.retain_graph) {
      outputs_.clear();
      seeds_.clear();
    }

    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
      Slot& s = slots_[*it];
      Node& node = *s.node;
      Var* grads = &grads_[s.first_grad];
      const size_t n_out = node.outputs.size();
      if (s.has_target) keep_target_results(node, grads);
      bool any_grad = std::any_of(grads, grads + n_out, [](const Var& g) { return g.defined(); });
      if (s.needed && any_grad) {
        // Every consumer of the outputs has run its VJP: if this VJP does not read them
        // either, they go now, before its temporaries are allocated.
        if (!options_.retain_graph && !node.op->vjp_reads_outputs)
          node.free_unheld_outputs(/*held_by_caller=*/1);  // s.node
        backpropagate(node, grads);
      }
      if (options_.on_leaf_grad_ready) release_leaves(node);
      if (options_.after_each_vjp) options_.after_each_vjp();
      // Every consumer of these values came earlier in this walk: their cotangents are spent.
      for (size_t i = 0; i < n_out; ++i) grads[i] = Var();
      if (!options_.retain_graph) node.release(/*held_by_caller=*/1);  // s.node
      // No later step looks this node up (only producers of later nodes' inputs are looked
      // up, and they come before it in the order), so the pass lets go of it now; what nothing
      // else needs is freed.
      unclaim(node);
      s.node.reset();
    }
  }

  // The accumulated gradient of each target (undefined where none reached it).
  std::vector<Var> results() {
    for (size_t j = 0; j < targets_.size(); ++j)
      if (!targets_[j]->producer)
        if (LeafTable::Entry* e = leaves_.find(targets_[j])) results_[j] = e->grad;
    return results_;
  }

  // backward(): adds every leaf gradient not yet delivered into its leaf's .grad.
  void deliver_remaining() {
    for (LeafTable::Entry& e : leaves_.entries()) deliver(e);
  }

  // The leaves whose .grad became a tensor of this pass (shared with a value the pass made).
  const std::vector<VarImpl*>& shared_grads() const { return shared_; }

 private:
  // backward(): .grad += this pass's gradient of the leaf (or takes it, if .grad is empty).
  void deliver(LeafTable::Entry& e) {
    if (e.delivered || !e.grad.defined()) return;
    e.delivered = true;
    VarImpl* leaf = e.leaf;
    if (!leaf->grad.defined()) {
      leaf->grad = e.grad.value();
      shared_.push_back(leaf);
    } else if (leaf->grad.dtype() == DType::f32) {
      add_into<float>(leaf->grad, e.grad.value());
    } else {
      add_into<double>(leaf->grad, e.grad.value());
    }
  }

  // After `node`'s VJP (or its skip): a leaf input whose last consumer this was has its whole
  // gradient now; it goes into .grad and the hook hears of it.
  void release_leaves(const Node& node) {
    for (const Var& in : node.inputs) {
      VarImpl* v = in.impl();
      if (v->producer || !v->requires_grad) continue;
      LeafTable::Entry* e = leaves_.find(v);
      if (!e || e->pending == 0 || --e->pending > 0) continue;
      if (!e->grad.defined()) continue;  // nothing reached it: no gradient, no call
      deliver(*e);
      options_.on_leaf_grad_ready(in);
    }
  }

  // The node's slot in this pass, or -1 if the pass did not collect it.
  int64_t slot_of(const Node* p) const {
    if (!shared_index_) {
      // Only this pass writes our id, on this thread, so a relaxed load suffices.
      return p->pass_id.load(std::memory_order_relaxed) == id_ ? int64_t{p->pass_slot} : -1;
    }
    auto it = shared_index_->find(p);
    return it == shared_index_->end() ? -1 : static_cast<int64_t>(it->second);
  }

  // Gives a new node a slot; returns false if it already has one.
  bool claim(Node* p) {
    if (slot_of(p) >= 0) return false;
    const uint32_t index = static_cast<uint32_t>(slots_.size());
    if (!shared_index_) {
      uint64_t expected = 0;
      if (p->pass_id.compare_exchange_strong(expected, id_, std::memory_order_acq_rel)) {
        p->pass_slot = index;
      } else {
        // Another pass walks this graph right now: from here on, keep our own index.
        use_shared_index();
        shared_index_->emplace(p, index);
      }
    } else {
      shared_index_->emplace(p, index);
    }
    slots_.push_back({p->shared_from_this(), static_cast<uint32_t>(grads_.size())});
    grads_.resize(grads_.size() + p->outputs.size());
    for (const VarImpl* t : node_targets_)
      if (t->producer == p) slots_.back().has_target = true;
    return true;
  }

  void use_shared_index() {
    shared_index_.emplace();
    for (size_t i = 0; i < slots_.size(); ++i) {
      shared_index_->emplace(slots_[i].node.get(), static_cast<uint32_t>(i));
      slots_[i].node->pass_id.store(0, std::memory_order_release);
    }
  }

  void unclaim(Node& node) {
    if (!shared_index_) node.pass_id.store(0, std::memory_order_release);
  }

  // Normally run() has handed every node back as it went; after an error, the rest.
  void unclaim_all() {
    for (Slot& s : slots_)
      if (s.node) unclaim(*s.node);
  }

  Var& slot(VarImpl* v) {
    if (v->producer) {
      // Inputs reach here only if needed, and needed values' producers were collected.
      const int64_t i = slot_of(v->producer);
      if (i >= 0) return grads_[slots_[i].first_grad + v->output_index];
    }
    return leaves_.find_or_add(v).grad;
  }

  bool is_target(const VarImpl* v) const {
    return std::find(node_targets_.begin(), node_targets_.end(), v) != node_targets_.end();
  }

  bool input_needed(VarImpl* v) {
    if (v->producer) {
      const int64_t i = slot_of(v->producer);
      if (i < 0) return false;
      const Slot& s = slots_[i];
      return s.needed || (s.has_target && is_target(v));
    }
    if (all_leaves_) return true;
    const LeafTable::Entry* e = leaves_.find(v);
    return e && e->target;
  }

  // Whether the gradient must flow into input `in` of a node: it depends on a differentiable
  // value, and a target is on its path.
  bool input_needed(const Var& in) {
    VarImpl* v = in.impl();  // node inputs are defined (call() checks)
    return v->requires_grad && input_needed(v);
  }

  void keep_target_results(Node& node, const Var* grads) {
    for (size_t j = 0; j < targets_.size(); ++j)
      if (targets_[j]->producer == &node) results_[j] = grads[targets_[j]->output_index];
  }

  // Depth-first post-order from the outputs, without recursion (graphs can be deep).
  void collect() {
    std::vector<std::pair<Node*, size_t>>& stack = scratch_->stack;
    auto visit = [&](const Var& v) {
      const VarImpl* impl = v.impl();
      Node* p = impl->producer;
      if (!p || !impl->requires_grad || !claim(p)) return;
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
        // Post-order: every input's producer is complete, so whether this node leads to a
        // target is known now (no separate walk).
        const uint32_t index = static_cast<uint32_t>(slot_of(node));
        for (const Var& in : node->inputs)
          if (input_needed(in)) {
            slots_[index].needed = true;
            break;
          }
        if (options_.on_leaf_grad_ready)
          for (const Var& in : node->inputs)
            if (!in.impl()->producer && in.impl()->requires_grad)
              ++leaves_.find_or_add(in.impl()).pending;
        order_.push_back(index);
        stack.pop_back();
      }
    }
  }

  void backpropagate(Node& node, Var* grads) {
    const OpDef& op = *node.op;
    // Most ops have one or two outputs and at most three inputs: no allocation for those.
    SmallVector<Var, 2> outputs, grad_outputs;
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      outputs.push_back(node.output(static_cast<int>(i)));
      if (!op.outputs[i].differentiable || !is_floating(node.outputs[i].value.dtype()))
        grad_outputs.emplace_back();
      else if (grads[i].defined())
        grad_outputs.push_back(std::move(grads[i]));  // spent after this VJP (run())
      else
        grad_outputs.emplace_back(
            Tensor::zeros(node.outputs[i].value.shape(), node.outputs[i].value.dtype()));
    }
    SmallVector<bool, 4> needs;
    needs.resize(node.inputs.size());
    bool any = false;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const Var& in = node.inputs[i];
      // Buffers (running statistics) are state, not arguments: no gradient flows into them.
      needs[i] = input_needed(in) && op.input_spec(i).kind != InputKind::buffer;
      any |= needs[i];
    }
    if (!any) return;
    VjpContext ctx{.op = op,
                   .attrs = node.attrs,
                   .inputs = node.inputs,
                   .outputs = outputs,
                   .grad_outputs = grad_outputs,
                   .needs_input_grad = needs,
                   .context = node.context.get(),
                   .owned_grad_outputs = grad_outputs.data()};
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
    if (input_grads.size() > std::max(op.inputs.size(), node.inputs.size()))
      fail("{}: the VJP of '{}' returned {} gradients for {} inputs", who_, op.name,
           input_grads.size(), node.inputs.size());
    for (size_t i = 0; i < std::min(input_grads.size(), node.inputs.size()); ++i) {
      if (!needs[i] || !input_grads[i].defined()) continue;
      const Var& in = node.inputs[i];
      if (!(input_grads[i].shape() == in.shape()) || input_grads[i].dtype() != in.dtype())
        fail("{}: the VJP of '{}' returned {} {} for input '{}', which is {} {}", who_, op.name,
             input_grads[i].dtype(), input_grads[i].shape(), op.input_name(i), in.dtype(),
             in.shape());
      accumulate(slot(in.impl()), std::move(input_grads[i]));
    }
  }

  std::vector<Var> outputs_;
  std::vector<Var> seeds_;
  GradOptions options_;
  const char* who_;
  const uint64_t id_ = next_pass_id.fetch_add(1, std::memory_order_relaxed);
  std::unique_ptr<Scratch> scratch_ = take_scratch();
  std::vector<Slot>& slots_ = scratch_->slots;
  std::vector<uint32_t>& order_ = scratch_->order;
  std::vector<Var>& grads_ = scratch_->grads;
  // Set once this pass met a node another pass was walking: slots are then found here.
  std::optional<std::unordered_map<const Node*, uint32_t>> shared_index_;
  bool all_leaves_;
  std::vector<VarImpl*> targets_;
  std::vector<VarImpl*> node_targets_;  // the targets that are op outputs (not leaves)
  std::vector<Var> results_;
  LeafTable leaves_;
  std::vector<VarImpl*> shared_;
};

}  // namespace

std::vector<Var> grad(const std::vector<Var>& outputs, const std::vector<Var>& wrt,
                      const std::vector<Var>& cotangents, GradOptions options) {
  return grad_releasing_outputs(std::vector<Var>(outputs), wrt, std::vector<Var>(cotangents),
                                options);
}

std::vector<Var> grad_releasing_outputs(std::vector<Var>&& outputs, const std::vector<Var>& wrt,
                                        std::vector<Var>&& cotangents, GradOptions options) {
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
  Pass pass(std::move(outputs), std::move(cotangents), options, "grad", targets, false);
  pass.run();
  std::vector<Var> result = pass.results();
  for (size_t i = 0; i < wrt.size(); ++i)
    if (!result[i].defined()) result[i] = Var(Tensor::zeros(wrt[i].shape(), wrt[i].dtype()));
  return result;
}

std::vector<Var> grad(const Var& output, const std::vector<Var>& wrt, GradOptions options) {
  return grad(std::vector<Var>{output}, wrt, {}, options);
}

void backward(const Var& loss, const Var& cotangent, GradOptions options) {
  std::vector<Var> outputs{loss};
  std::vector<Var> cotangents;
  if (cotangent.defined()) cotangents.push_back(cotangent);
  // Leaves whose new .grad shares its tensor with the pass's value.
  std::vector<VarImpl*> shared;
  {
    Pass pass(std::move(outputs), std::move(cotangents), options, "backward", {}, true);
    pass.run();
    pass.deliver_remaining();  // with a ready hook, most were delivered during the pass
    shared = pass.shared_grads();
  }
  // The pass is gone. A gradient tensor that nothing else holds now (the usual case) is kept
  // as it is; one still shared (with a cotangent the caller passed in, or a value the caller
  // holds) is copied, since later passes accumulate into .grad in place.
  for (VarImpl* leaf : shared)
    if (!leaf->grad.unique()) leaf->grad = leaf->grad.clone();
}

}  // namespace dg
