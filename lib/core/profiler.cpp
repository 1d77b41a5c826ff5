#include "deltagraph/core/profiler.h"
#include "deltagraph/core/tensor.h"

#include <fmt/format.h>

#include <algorithm>

#include "deltagraph/core/op.h"

namespace dg {

namespace {
// The innermost open profiler of this thread; each one links to the one it hides.
thread_local Profiler* innermost = nullptr;
}  // namespace

Profiler::Profiler() : start_(std::chrono::steady_clock::now()), outer_(innermost) {
  // The outermost profiler starts the process's memory peak afresh, so that its table tells
  // the peak of its own scope.
  if (!outer_) reset_peak_memory();
  start_live_bytes_ = memory_stats().live_bytes;
  innermost = this;
}

Profiler::~Profiler() { innermost = outer_; }

bool Profiler::active() { return innermost != nullptr; }

void Profiler::record(const OpDef& op, bool backward, const OpDef* vjp_of,
                      std::chrono::nanoseconds time) {
  for (Profiler* p = innermost; p != nullptr; p = p->outer_) {
    // A linear search: a model has a few dozen distinct (op, pass) pairs, and this runs only
    // while profiling.
    auto it = std::find_if(p->entries_.begin(), p->entries_.end(), [&](const Entry& e) {
      return e.op == &op && e.backward == backward && e.vjp_of == vjp_of;
    });
    if (it == p->entries_.end()) {
      p->entries_.push_back({&op, backward, vjp_of, 1, time});
    } else {
      ++it->calls;
      it->total += time;
    }
  }
}

std::vector<OpTiming> Profiler::timings() const {
  std::vector<OpTiming> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_)
    out.push_back({e.op->name, e.backward, e.vjp_of ? e.vjp_of->name : std::string(), e.calls,
                   std::chrono::duration<double, std::milli>(e.total).count()});
  std::stable_sort(out.begin(), out.end(),
                   [](const OpTiming& a, const OpTiming& b) { return a.total_ms > b.total_ms; });
  return out;
}

double Profiler::elapsed_ms() const {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
      .count();
}

std::string Profiler::table() const {
  const std::vector<OpTiming> rows = timings();
  const double wall = elapsed_ms();
  auto pass = [](const OpTiming& t) {
    if (!t.backward) return std::string("forward");
    return t.vjp_of.empty() ? std::string("backward (sums)") : "backward of " + t.vjp_of;
  };
  size_t op_width = 2, pass_width = 4;
  for (const OpTiming& t : rows) {
    op_width = std::max(op_width, t.op.size());
    pass_width = std::max(pass_width, pass(t).size());
  }
  auto share = [&](double ms) { return wall > 0 ? 100 * ms / wall : 0.0; };
  std::string out = fmt::format("{:<{}}  {:<{}}  {:>7}  {:>10}  {:>10}  {:>6}\n", "op", op_width,
                                "pass", pass_width, "calls", "total ms", "mean us", "%wall");
  double sum = 0;
  for (const OpTiming& t : rows) {
    sum += t.total_ms;
    out += fmt::format("{:<{}}  {:<{}}  {:>7}  {:>10.3f}  {:>10.1f}  {:>6.1f}\n", t.op, op_width,
                       pass(t), pass_width, t.calls, t.total_ms,
                       1000 * t.total_ms / static_cast<double>(t.calls), share(t.total_ms));
  }
  out += fmt::format("ops: {:.3f} ms of {:.3f} ms wall ({:.1f}%); the rest is outside ops\n", sum,
                     wall, share(sum));
  const MemoryStats memory = memory_stats();
  out += fmt::format(
      "tensor memory: {:.1f} MB live at the start, {:.1f} MB now, peak {:.1f} MB{}\n",
      static_cast<double>(start_live_bytes_) / 1e6, static_cast<double>(memory.live_bytes) / 1e6,
      static_cast<double>(memory.peak_bytes) / 1e6,
      outer_ ? " (since the outer profiler opened)" : "");
  return out;
}

}  // namespace dg
