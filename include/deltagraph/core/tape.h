// deltagraph: Tape, the dynamic recording scope, and NoGrad.
//
//   dg::Tape tape;              // from here on, ops on this thread are recorded
//   dg::Var y = dg::relu(x);    // recorded: y knows its producer and inputs
//   { dg::NoGrad ng; ... }      // nothing recorded in here (inference)
//
// Tapes nest; the innermost one on a thread records. Separate threads have separate tapes.
// An op is recorded only when a tape is active, recording is not paused, and at least one of
// its inputs requires a gradient: inference on plain inputs never builds a graph.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dg {

class Tape {
 public:
  Tape();
  ~Tape();
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  // Number of ops recorded on this tape so far.
  uint64_t size() const { return recorded_; }
  // The innermost active tape on this thread, or nullptr.
  static Tape* current();
  // True if an op would be recorded now (a tape is active and no NoGrad scope is open).
  static bool recording();

 private:
  friend struct Recorder;
  Tape* parent_ = nullptr;
  uint64_t recorded_ = 0;
};

// Pauses recording on this thread for its lifetime (inference, optimiser updates).
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;
};

// Turns recording on for its lifetime, whatever NoGrad scopes are open, with a tape of its own
// if none is active: the engine records a backward pass with it (create_graph), and gradient
// checks record the function they differentiate twice.
class ForceRecording {
 public:
  ForceRecording();
  ~ForceRecording();
  ForceRecording(const ForceRecording&) = delete;
  ForceRecording& operator=(const ForceRecording&) = delete;

 private:
  int saved_paused_;
  std::unique_ptr<Tape> owned_;
};

// Groups the ops recorded in its lifetime under a name ("encoder"); scopes nest with "/".
// DOT export draws each scope as a cluster.
class Scope {
 public:
  explicit Scope(std::string name);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
  // The current scope path on this thread ("" at top level).
  static const std::string& current();

 private:
  size_t previous_length_;
};

}  // namespace dg
