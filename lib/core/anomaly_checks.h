// Internal: the anomaly-mode checks run by call() and by the engine.
#pragma once

#include <span>
#include "deltagraph/core/source_location.h"

#include "deltagraph/core/anomaly.h"
#include "deltagraph/core/op.h"

namespace dg {

struct Node;

// Marks the node whose VJP runs for its lifetime, so checks inside it say "backward".
class AnomalyVjpScope {
 public:
  explicit AnomalyVjpScope(const Node* node);
  ~AnomalyVjpScope();

 private:
  const Node* previous_;
};

// Throws AnomalyError if an output holds NaN/Inf: naming this op if its inputs were finite.
void check_op_outputs(const OpDef& op, const Attrs& attrs, std::span<const Var> inputs,
                      std::span<const Tensor> outputs, const SourceLocation& location);
// Throws AnomalyError if a VJP returned NaN/Inf that none of its internal ops created (for
// instance a non-finite cotangent given by the caller).
void check_vjp_results(const Node& node, std::span<const Var> grad_outputs,
                       std::span<const Var> results);

}  // namespace dg
