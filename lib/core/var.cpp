// Var, Param, leaves, and the thread-local recording state (Tape, NoGrad, Scope).
#include "deltagraph/core/var.h"

#include "deltagraph/core/graph.h"
#include "deltagraph/core/tape.h"
#include "recording.h"

namespace dg {

namespace {

std::shared_ptr<VarImpl> make_leaf(Tensor value, std::string name, VarKind kind, bool requires_grad,
                                   const char* who) {
  if (!value.defined()) fail("{}: the tensor is undefined", who);
  if (requires_grad && !is_floating(value.dtype()))
    fail("{}: only float32/float64 values can be differentiated, got an int64 tensor of shape {}",
         who, value.shape());
  auto impl = std::make_shared<VarImpl>();
  impl->value = std::move(value);
  impl->kind = kind;
  impl->requires_grad = requires_grad;
  impl->name = std::move(name);
  return impl;
}

const VarImpl& checked(const std::shared_ptr<VarImpl>& impl, const char* what) {
  if (!impl) fail("Var::{}: the Var is undefined (default-constructed)", what);
  return *impl;
}

}  // namespace

Var::Var(Tensor value) : impl_(make_leaf(std::move(value), "", VarKind::constant, false, "Var")) {}

const Tensor& Var::value() const { return checked(impl_, "value").value; }
bool Var::requires_grad() const { return checked(impl_, "requires_grad").requires_grad; }
VarKind Var::kind() const { return checked(impl_, "kind").kind; }
const Tensor& Var::grad() const { return checked(impl_, "grad").grad; }
const std::string& Var::name() const { return checked(impl_, "name").name; }
Var& Var::named(std::string name) {
  checked(impl_, "named");
  impl_->name = std::move(name);
  return *this;
}
const Node* Var::producer() const { return checked(impl_, "producer").producer; }
int Var::output_index() const { return checked(impl_, "output_index").output_index; }

Param::Param(Tensor value, std::string name)
    : Var(make_leaf(std::move(value), std::move(name), VarKind::param, true, "Param")) {}
Tensor& Param::mutable_value() {
  checked(impl_, "mutable_value");
  return impl_->value;
}
Tensor& Param::mutable_grad() {
  checked(impl_, "mutable_grad");
  return impl_->grad;
}
void Param::zero_grad() {
  checked(impl_, "zero_grad");
  impl_->grad = Tensor();
}

Var input(Tensor value, std::string name) {
  return Var(make_leaf(std::move(value), std::move(name), VarKind::input, false, "input"));
}
Var constant(Tensor value, std::string name) {
  return Var(make_leaf(std::move(value), std::move(name), VarKind::constant, false, "constant"));
}
Var variable(Tensor value, std::string name) {
  return Var(make_leaf(std::move(value), std::move(name), VarKind::input, true, "variable"));
}

// ---- recording state --------------------------------------------------------------------

namespace {
struct ThreadState {
  Tape* tape = nullptr;
  int paused = 0;
  std::string scope;
  BackwardOrigin backward;  // set while the engine records a backward pass
};
thread_local ThreadState state;
}  // namespace

Tape::Tape() : parent_(state.tape) { state.tape = this; }
Tape::~Tape() { state.tape = parent_; }
Tape* Tape::current() { return state.tape; }
bool Tape::recording() { return state.tape != nullptr && state.paused == 0; }

NoGrad::NoGrad() { ++state.paused; }
NoGrad::~NoGrad() { --state.paused; }

Scope::Scope(std::string name) : previous_length_(state.scope.size()) {
  if (!state.scope.empty()) state.scope += '/';
  state.scope += name;
}
Scope::~Scope() { state.scope.resize(previous_length_); }
const std::string& Scope::current() { return state.scope; }

uint64_t Recorder::note_recorded() {
  static std::atomic<uint64_t> sequence{0};
  ++state.tape->recorded_;
  return sequence.fetch_add(1, std::memory_order_relaxed);
}

const BackwardOrigin& Recorder::backward_origin() { return state.backward; }

RecordingBackward::RecordingBackward(BackwardOrigin origin) : saved_(state.backward) {
  state.backward = origin;
}
RecordingBackward::~RecordingBackward() { state.backward = saved_; }

ForceRecording::ForceRecording() : saved_paused_(state.paused) {
  state.paused = 0;
  if (!state.tape) owned_ = std::make_unique<Tape>();
}
ForceRecording::~ForceRecording() {
  owned_.reset();
  state.paused = saved_paused_;
}

}  // namespace dg

namespace dg {

// ---- graph teardown ---------------------------------------------------------------------

namespace {
// Inputs of destroyed nodes waiting to be dropped, and whether this thread is dropping them.
struct Teardown {
  std::vector<Var> pending;
  bool draining = false;
};
thread_local Teardown teardown;
}  // namespace

Node::~Node() {
  if (inputs.empty()) return;
  for (Var& v : inputs) {
    if (released && v.impl()->producer)
      v.impl()->producer->structural_refs.fetch_sub(1, std::memory_order_relaxed);
    teardown.pending.push_back(std::move(v));
  }
  inputs.clear();
  if (teardown.draining) return;  // an outer destructor is already draining the list
  teardown.draining = true;
  while (!teardown.pending.empty()) {
    Var v = std::move(teardown.pending.back());
    teardown.pending.pop_back();
    // Destroying v here may destroy its node, which appends that node's inputs to the list.
  }
  teardown.draining = false;
}

void Node::release(long held_by_caller) {
  if (released) return;
  released = true;
  for (const Var& v : inputs)
    if (Node* producer = v.impl()->producer)
      producer->structural_refs.fetch_add(1, std::memory_order_relaxed);
  free_unheld_outputs(held_by_caller);
}

void Node::free_unheld_outputs(long held_by_caller) {
  // Every reference to this node is a Var aliasing it (or the caller's). If all of them are
  // released nodes' edges, nobody can read the values again: only the drawing of the graph.
  const long holders = weak_from_this().use_count() - held_by_caller;
  if (holders == static_cast<long>(structural_refs.load(std::memory_order_relaxed)))
    for (VarImpl& out : outputs) out.value.free_data();
}

bool Node::values_freed() const {
  return released && !outputs.empty() && !outputs[0].value.defined();
}

}  // namespace dg
