// deltagraph: Var, a value in a differentiable expression, and Param, a persistent weight.
//
// A Var is a cheap, shared handle. It holds a Tensor value and, if an op produced it while a
// Tape was recording, a link to that op's node; the graph of nodes is kept alive by the Vars
// that refer to it, so it never dangles. Leaves are made with input(), constant(), variable()
// or Param.
#pragma once

#include <memory>
#include <string>

#include "deltagraph/core/tensor.h"

namespace dg {

struct VarImpl;
struct Node;

// What kind of value a Var is; DOT export and error messages tell them apart.
enum class VarKind : uint8_t {
  input,     // data fed to the model; not differentiated unless asked (variable())
  constant,  // a fixed tensor inside the expression
  param,     // a persistent weight with a .grad
  output,    // produced by a recorded op
};

class Var {
 public:
  Var() = default;  // undefined
  // A constant wrapping `value` (so tensors can be passed where a Var is expected).
  Var(Tensor value);  // NOLINT(google-explicit-constructor): tensors are values in expressions
  explicit Var(std::shared_ptr<VarImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const;
  const Shape& shape() const { return value().shape(); }
  DType dtype() const { return value().dtype(); }
  int dim() const { return value().dim(); }
  int64_t size(int axis) const { return value().size(axis); }
  int64_t numel() const { return value().numel(); }
  double item() const { return value().item(); }

  // True if gradients flow into this value (a Param, a variable(), or an op output that
  // depends on one, recorded on a tape).
  bool requires_grad() const;
  VarKind kind() const;
  // The gradient accumulated by backward() into a leaf (undefined if none yet).
  const Tensor& grad() const;
  // Names show up in DOT graphs and error messages ("conv1.weight").
  const std::string& name() const;
  Var& named(std::string name);
  // The node that produced this value, or nullptr for a leaf or an unrecorded result.
  const Node* producer() const;
  // Which output of its producer this value is.
  int output_index() const;

  VarImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<VarImpl>& impl_ptr() const { return impl_; }
  friend bool operator==(const Var& a, const Var& b) { return a.impl_ == b.impl_; }

 protected:
  std::shared_ptr<VarImpl> impl_;
};

// A persistent, trainable weight. It outlives tapes and steps, is differentiated by default
// and accumulates its gradient in .grad() when backward() runs.
class Param : public Var {
 public:
  Param() = default;
  Param(Tensor value, std::string name = "");  // NOLINT: `Param w = dg::kaiming(...)` reads well
  // Mutable access to the weight, for optimisers and checkpoint loading.
  Tensor& mutable_value();
  Tensor& mutable_grad();
  // Sets the accumulated gradient to undefined (the next backward() starts from zero).
  void zero_grad();
  int64_t count() const { return numel(); }
};

// Data that is not differentiated (images, labels).
Var input(Tensor value, std::string name = "");
// A fixed tensor inside an expression.
Var constant(Tensor value, std::string name = "");
// A leaf that is differentiated, without being a persistent parameter (gradient checks).
Var variable(Tensor value, std::string name = "");

}  // namespace dg
