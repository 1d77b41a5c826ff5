// Internal: hooks between the op call path, the engine and the thread's recording state.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "deltagraph/tape.h"

namespace dg {

struct Recorder {
  // Counts an op on the active tape; returns its global sequence number.
  static uint64_t note_recorded();
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
