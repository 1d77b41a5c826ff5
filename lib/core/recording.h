// Internal: hooks between the op call path, the engine and the thread's recording state.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "deltagraph/core/autodiff.h"
#include "deltagraph/core/graph.h"
#include "deltagraph/core/tape.h"

namespace dg {

struct Recorder {
  // Counts an op on the active tape; returns its global sequence number.
  static uint64_t note_recorded();
  // What the engine is doing on this thread, copied into every node recorded now.
  static const BackwardOrigin& backward_origin();
};

// Marks the ops recorded on this thread during its lifetime as part of a backward pass (and,
// with a vjp_op, as made by that op's VJP); restores the previous marking when it ends, so
// nested passes (gradients of gradients) mark their own nodes.
class RecordingBackward {
 public:
  explicit RecordingBackward(BackwardOrigin origin);
  ~RecordingBackward();
  RecordingBackward(const RecordingBackward&) = delete;
  RecordingBackward& operator=(const RecordingBackward&) = delete;

 private:
  BackwardOrigin saved_;
};

// grad() that takes the outputs and cotangents from its caller and lets go of them once the
// cotangents are seeded (without retain_graph): a checkpoint's replayed result and the
// cotangent it was handed are then freed during the backward pass as soon as no VJP needs
// them, instead of living until the pass ends.
std::vector<Var> grad_releasing_outputs(std::vector<Var>&& outputs, const std::vector<Var>& wrt,
                                        std::vector<Var>&& cotangents, GradOptions options);

// The recorded ops between `outputs` and the values they start from, producers before consumers
// (forward mode's sweep, a checkpoint's program).
std::vector<Node*> recorded_order(const std::vector<Var>& outputs);

}  // namespace dg
