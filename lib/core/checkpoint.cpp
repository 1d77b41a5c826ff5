// Rematerialisation (include/deltagraph/core/checkpoint.h): a segment recorded as a program of
// ops, held by one `checkpoint` node, replayed by that node's VJP.
#include "deltagraph/core/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "deltagraph/core/autodiff.h"
#include "deltagraph/core/error.h"
#include "deltagraph/core/graph.h"
#include "deltagraph/core/op.h"
#include "deltagraph/core/tape.h"
#include "recording.h"

namespace dg {

namespace {

// The segment as straight-line code over numbered values: slots [0, inputs) are the checkpoint
// node's inputs (the segment's own, then what it used from outside that needs a gradient), the
// constants come next, and each instruction's outputs after them.
struct Program {
  struct Instruction {
    const OpDef* op;
    Attrs attrs;
    std::vector<size_t> in, out;
  };
  size_t inputs = 0;
  std::vector<Var> constants;  // values used from outside that need no gradient
  std::vector<Instruction> code;
  size_t slots = 0, result = 0;
  // The segment's output from the recording run, handed to the node's forward kernel once.
  mutable std::optional<Tensor> first_value;
};

// Runs the program on `inputs` (recorded if recording is on); returns the result's value slot.
Var replay(const Program& p, std::span<const Var> inputs) {
  std::vector<Var> slot(p.slots);
  for (size_t i = 0; i < p.inputs; ++i) slot[i] = inputs[i];
  for (size_t k = 0; k < p.constants.size(); ++k) slot[p.inputs + k] = p.constants[k];
  std::vector<Var> args;
  for (const Program::Instruction& ins : p.code) {
    args.clear();
    for (size_t s : ins.in) args.push_back(slot[s]);
    std::vector<Var> outs = call(*ins.op, args, ins.attrs);
    for (size_t j = 0; j < ins.out.size(); ++j) slot[ins.out[j]] = std::move(outs[j]);
  }
  return slot[p.result];
}

const Program& program_of(const void* context) {
  if (!context) fail("checkpoint: the op was called without its program (use dg::checkpoint)");
  return *static_cast<const Program*>(context);
}

// d(<g, y>)/d inputs by replaying the segment with recording on: the recorded inputs themselves
// when this backward pass records (create_graph), else fresh leaves of their values.
std::vector<Var> checkpoint_vjp(const VjpContext& c) {
  const Program& p = program_of(c.context);
  const bool recorded = Tape::recording();
  std::optional<Tape> tape;
  std::optional<ForceRecording> force;
  if (!recorded) {
    tape.emplace();
    force.emplace();
  }
  std::vector<Var> in, wrt;
  std::vector<size_t> wanted;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const Var& x = c.input(static_cast<int>(i));
    if (c.needs(static_cast<int>(i))) {
      in.push_back(recorded && x.requires_grad() ? x : variable(x.value()));
      wrt.push_back(in.back());
      wanted.push_back(i);
    } else {
      in.emplace_back(x.value());
    }
  }
  std::vector<Var> result(c.inputs.size());
  std::vector<Var> y{replay(p, in)};
  if (wrt.empty() || !y[0].requires_grad()) return result;
  // The replayed result is handed over: its value goes as soon as no VJP in the segment needs it.
  std::vector<Var> g{c.take_grad_output(0)};
  const std::vector<Var> grads =
      grad_releasing_outputs(std::move(y), wrt, std::move(g), {.create_graph = recorded});
  for (size_t k = 0; k < wanted.size(); ++k) result[wanted[k]] = grads[k];
  return result;
}

const OpDef& checkpoint_op() {
  static const OpDef& op = register_op({
      .name = "checkpoint",
      .summary = "a rematerialised segment: runs its recorded program again when differentiated",
      .inputs = {{"x", InputKind::float_or_int64, false, true}},
      .shape =
          [](const OpCall& c) {
            const Program& p = program_of(c.context);
            if (!p.first_value) fail("checkpoint: the segment's value was already taken");
            return std::vector<TensorSpec>{{p.first_value->shape(), p.first_value->dtype()}};
          },
      .forward =
          [](const OpCall& c, std::span<const TensorSpec>) {
            const Program& p = program_of(c.context);
            std::vector<Tensor> out{std::move(*p.first_value)};
            p.first_value.reset();
            return out;
          },
      .vjp = checkpoint_vjp,
      .vjp_formula = "the VJP of the segment, replayed",
      // The replay recomputes the result: the value kept for the next segment goes first.
      .vjp_reads_outputs = false,
  });
  return op;
}

}  // namespace

Var checkpoint(const std::function<Var(const std::vector<Var>&)>& fn,
               const std::vector<Var>& inputs) {
  // Nothing would be recorded: no values to keep or drop.
  if (!Tape::recording()) return fn(inputs);
  auto program = std::make_shared<Program>();
  std::vector<Var> node_inputs = inputs;
  Var y;
  {
    // The segment runs on stand-ins for its inputs, recorded on a tape of its own.
    Tape tape;
    std::vector<Var> stand_ins;
    std::unordered_map<const VarImpl*, size_t> slot_of;
    for (size_t i = 0; i < inputs.size(); ++i) {
      stand_ins.push_back(is_floating(inputs[i].dtype()) ? variable(inputs[i].value())
                                                         : Var(inputs[i].value()));
      slot_of[stand_ins.back().impl()] = i;
    }
    y = fn(stand_ins);
    if (!y.defined()) fail("checkpoint: the segment returned an undefined Var");
    if (!y.impl()->producer) {
      // The segment recorded nothing: it returned one of its inputs, or a constant.
      auto it = slot_of.find(y.impl());
      return it != slot_of.end() ? inputs[it->second] : y;
    }
    const std::vector<Node*> order = recorded_order({y});
    // Values from outside the segment: those that need a gradient become node inputs, the rest
    // constants. Numbered after the segment's inputs (constants renumbered below).
    const std::unordered_set<const Node*> segment(order.begin(), order.end());
    std::unordered_set<const VarImpl*> seen_outside;
    std::vector<Var> outside_vars;
    for (Node* node : order)
      for (const Var& v : node->inputs) {
        const VarImpl* impl = v.impl();
        const bool inside = impl->producer && segment.count(impl->producer);
        if (inside || slot_of.count(impl) || !seen_outside.insert(impl).second) continue;
        outside_vars.push_back(v);
      }
    for (const Var& v : outside_vars)
      if (v.requires_grad()) {
        slot_of[v.impl()] = node_inputs.size();
        node_inputs.push_back(v);
      }
    program->inputs = node_inputs.size();
    for (const Var& v : outside_vars)
      if (!v.requires_grad()) {
        slot_of[v.impl()] = program->inputs + program->constants.size();
        program->constants.push_back(v);
      }
    size_t next = program->inputs + program->constants.size();
    for (Node* node : order) {
      Program::Instruction ins{node->op, node->attrs, {}, {}};
      for (const Var& v : node->inputs) ins.in.push_back(slot_of.at(v.impl()));
      for (size_t j = 0; j < node->outputs.size(); ++j) {
        slot_of[&node->outputs[j]] = next;
        ins.out.push_back(next++);
      }
      program->code.push_back(std::move(ins));
    }
    program->slots = next;
    program->result = slot_of.at(y.impl());
    program->first_value = y.value();
  }
  // The segment's nodes and intermediate values go with the tape's Vars here; one node stands
  // for them.
  y = Var();
  return call_with_context(checkpoint_op(), node_inputs, Attrs(&checkpoint_op(), {}),
                           std::move(program))[0];
}

namespace {

// Where each of k segments of a chain of n layers ends. When segment j's VJP recomputes it, the
// inputs of segments 1..j are held too: with a layer keeping m bytes and passing on b = r m
// (r = 1/2: an op and its activation keep two values of the output's size), segment j peaks
// at j b + s_j m. Sizes s_j = n/k + r (k-1)/2 - r j even that out and sum to n; r is lowered
// where the last segment would get less than one layer (k close to n: uniform segments).
std::vector<int> segment_ends(int n, int k) {
  const double mean = static_cast<double>(n) / k;
  const double r = k > 1 ? std::min(0.5, 2 * (mean - 1) / (k - 1)) : 0.0;
  std::vector<int> ends(k);
  double total = 0;
  for (int j = 0; j < k; ++j) {
    total += mean + r * (k - 1) / 2 - r * j;
    ends[j] = static_cast<int>(std::lround(total));
  }
  ends[k - 1] = n;
  return ends;
}

}  // namespace

Var checkpoint_sequential(const std::vector<std::function<Var(const Var&)>>& layers, const Var& x,
                          int segments) {
  const auto n = static_cast<int>(layers.size());
  if (segments < 0) fail("checkpoint_sequential: segments must be >= 0, got {}", segments);
  if (segments == 0) segments = std::max(1, static_cast<int>(std::lround(std::sqrt(n))));
  segments = std::min(segments, std::max(n, 1));
  const std::vector<int> ends = segment_ends(n, segments);
  Var h = x;
  for (int s = 0; s < segments; ++s) {
    const int begin = s ? ends[s - 1] : 0, end = ends[s];
    auto run = [&layers, begin, end](const Var& in) {
      Var v = in;
      for (int i = begin; i < end; ++i) v = layers[i](v);
      return v;
    };
    if (s + 1 == segments)
      h = run(h);
    else
      h = checkpoint([&run](const std::vector<Var>& in) { return run(in[0]); }, {h});
  }
  return h;
}

}  // namespace dg
