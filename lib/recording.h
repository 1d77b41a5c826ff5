// Internal: hooks between the op call path, the engine and the thread's recording state.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "deltagraph/graph.h"
#include "deltagraph/tape.h"

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

// Turns recording on for its lifetime, whatever NoGrad scopes are open, with a tape of its own
// if none is active. The engine uses it to record the backward pass (create_graph).
class ForceRecording {
 public:
  ForceRecording();
  ~ForceRecording();

 private:
  int saved_paused_;
  std::unique_ptr<Tape> owned_;
};

}  // namespace dg
