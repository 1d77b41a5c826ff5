// deltagraph: the recorded graph, read-only for tools (DOT export, debuggers, the engine).
//
// Every op recorded on a tape becomes a Node. A Node owns its output values (VarImpl), and its
// inputs are Vars, so the graph is kept alive exactly as long as something refers to it; there
// are no cycles. A backward pass frees the values it no longer needs but keeps the structure,
// so a graph can be drawn after its backward pass (without values). The reverse-mode engine
// (autodiff.h) walks Nodes from the outputs back.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include "deltagraph/core/source_location.h"

#include "deltagraph/core/op.h"
#include "deltagraph/core/small_vector.h"
#include "deltagraph/core/var.h"

namespace dg {

// Field order matters for speed, not meaning: what the engine reads on every edge of the graph
// (producer, requires_grad) comes first, next to the node header.
struct VarImpl {
  Node* producer = nullptr;  // the node owning this VarImpl, or nullptr for a leaf
  int output_index = 0;
  bool requires_grad = false;
  VarKind kind = VarKind::constant;
  Tensor value;
  std::string name;
  Tensor grad;  // accumulated by backward() for leaves
};

// Where a node recorded during a backward pass (dg::grad with create_graph) came from. The
// engine fills it in without knowing any op: tools such as the DOT export use it to draw the
// backward graph and to show that, say, a conv_transpose2d is conv2d's VJP.
struct BackwardOrigin {
  // True if the node was recorded while the engine ran a recorded backward pass.
  bool in_backward_pass = false;
  // The op whose VJP recorded this node, or nullptr for the engine's own work (summing the
  // gradient contributions of a value used several times).
  const OpDef* vjp_op = nullptr;
  // The sequence number of the node whose VJP recorded this one (meaningful with vjp_op).
  uint64_t vjp_of = 0;
};

struct Node : std::enable_shared_from_this<Node> {
  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Releases the inputs without recursion: a chain of a million ops is torn down in a loop,
  // not a million nested destructor calls.
  ~Node();

  // Field order matters for speed, not meaning: a backward pass touches every node several
  // times, so what it reads (its bookkeeping, op, inputs, and the outputs' producer and
  // requires_grad) sits in the first cache lines; what tools read comes after.

  // Engine bookkeeping (autodiff.cpp), meaningless to tools: the id of the backward pass that
  // is walking this node now (0: none) and the node's slot in that pass's tables. Finding a
  // node's gradient slot is then a field read instead of a hash lookup. The claim is atomic:
  // a second pass through the same graph at the same time (another thread differentiating a
  // retained graph, or a VJP that itself calls grad) sees it taken and uses a table of its own.
  std::atomic<uint64_t> pass_id{0};
  uint32_t pass_slot = 0;
  // A backward pass that does not retain the graph has run this node's VJP: the values it saved
  // are freed, the structure (op, edges, shapes, scope, names) stays for tools to draw.
  bool released = false;
  // How many input slots of released nodes refer to one of this node's outputs. Those refer to
  // it for the structure only; anything else holding it (a user's Var, a node whose VJP has not
  // run) still needs its values.
  std::atomic<uint32_t> structural_refs{0};

  const OpDef* op = nullptr;
  // Inline for the common arities, so that recording an op allocates the node and nothing else.
  SmallVector<Var, 3> inputs;
  SmallVector<VarImpl, 1> outputs;  // fixed size once recorded: Vars alias into it
  Attrs attrs;
  uint64_t sequence = 0;    // position in recording order, for tools
  std::string scope;        // name scope at recording time ("encoder/block1")
  SourceLocation location;  // the user's call site
  BackwardOrigin backward;  // set when recorded by a backward pass (create_graph)
  // State handed to call_with_context (a checkpointed segment's program), for the op's VJP.
  std::shared_ptr<const void> context;

  // The i-th output as a Var connected to this node.
  Var output(int i) { return Var(std::shared_ptr<VarImpl>(shared_from_this(), &outputs[i])); }
  // Shapes of the inputs.
  std::vector<Shape> input_shapes() const {
    std::vector<Shape> out;
    for (const Var& v : inputs) out.push_back(v.shape());
    return out;
  }
  // Called by a backward pass that does not retain the graph, once this node's VJP has run
  // (`held_by_caller`: the references the caller itself holds). From now on the node's edges
  // serve the structure only, and its output values are freed (shape and dtype stay) unless
  // something other than the structure still holds them: a user's Var, or a node whose VJP
  // has not run. Its inputs' producers get the same treatment when their own VJPs have run.
  void release(long held_by_caller);
  // Frees the outputs' values if only the structure (and `held_by_caller` references) still
  // refers to them: the engine calls it before the VJP of an op that does not read its outputs.
  void free_unheld_outputs(long held_by_caller);
  // Whether the outputs' values were freed by release().
  bool values_freed() const;
};

}  // namespace dg
