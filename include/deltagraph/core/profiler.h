// deltagraph: where the time of a training step goes, op by op.
//
//   dg::Profiler profiler;
//   ...forward...; dg::backward(loss); optimizer.step();
//   fmt::print("{}", profiler.table());
//
// While a Profiler is open on a thread, every op run on that thread is timed (its shape rule and
// kernel, wall clock). An op run by a VJP is counted apart, under the op whose VJP ran it, so the
// table tells conv2d's forward from the conv2d_weight_grad its backward pass runs. Work that is
// not an op (an optimizer's update, data loading) is the gap between the ops' sum and the wall
// time since the profiler opened, which the table shows last. Off by default; when off, the cost
// is one thread-local test per op. Profilers nest: an inner one sees only its own scope, and the
// outer one sees everything, the inner scope included.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace dg {

struct OpDef;

struct OpTiming {
  std::string op;
  // Run during a backward pass: by the VJP of `vjp_of`, or, with vjp_of empty, by the engine
  // itself (summing the gradients of a value used more than once).
  bool backward = false;
  std::string vjp_of;
  int64_t calls = 0;
  double total_ms = 0;
};

class Profiler {
 public:
  Profiler();
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // The ops timed so far, the most expensive first.
  std::vector<OpTiming> timings() const;
  // Wall time since the profiler opened, in milliseconds.
  double elapsed_ms() const;
  // timings() as an aligned table (op, pass, calls, total ms, mean µs, share of the wall time),
  // ending with the ops' sum and the wall time, and the tensor memory: live when the profiler
  // opened, now, and the peak in between (the outermost profiler resets the process's peak).
  std::string table() const;

  // Internal: the op call path reports each op's time to the open profilers of its thread.
  static bool active();
  static void record(const OpDef& op, bool backward, const OpDef* vjp_of,
                     std::chrono::nanoseconds time);

 private:
  struct Entry {
    const OpDef* op;
    bool backward;
    const OpDef* vjp_of;
    int64_t calls;
    std::chrono::nanoseconds total;
  };
  std::vector<Entry> entries_;
  std::chrono::steady_clock::time_point start_;
  Profiler* outer_;
  int64_t start_live_bytes_ = 0;  // tensor storage live when it opened (memory_stats)
};

}  // namespace dg
