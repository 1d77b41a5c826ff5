// Data-parallel training over MPI: the world, parameter checks and broadcast, metric sums, and
// the bucketed gradient reducer (include/deltagraph/distributed/distributed.h).
//
// OpenMPI makes progress on a non-blocking collective only inside MPI calls (it has no progress
// thread). The reducer starts each bucket's MPI_Iallreduce from the engine's ready hook and
// calls MPI_Test on the oldest one in flight after every VJP (GradOptions::after_each_vjp), so
// the exchange advances while the backward pass computes, on the same thread (on a 2-core
// machine a communication thread would take a core from the computation).
#include "deltagraph/distributed/distributed.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include <fmt/format.h>

#include "deltagraph/core/autodiff.h"
#include "deltagraph/core/error.h"

namespace dg::dist {

namespace {

// The library's own communicator (a duplicate of MPI_COMM_WORLD, so that a program's own
// collectives never interleave with ours), or MPI_COMM_NULL without a World.
MPI_Comm g_comm = MPI_COMM_NULL;
int g_rank = 0, g_size = 1;

bool active() { return g_comm != MPI_COMM_NULL && g_size > 1; }

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  fail("dg::dist: {} failed on rank {}: {}", what, g_rank, std::string(text, length));
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i64:
      return MPI_INT64_T;
  }
  return MPI_BYTE;
}

// Every rank's string (MPI_Allgatherv), in rank order.
std::vector<std::string> allgather_strings(const std::string& mine) {
  const int length = static_cast<int>(mine.size());
  std::vector<int> lengths(g_size), offsets(g_size);
  check(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, g_comm), "MPI_Allgather");
  int total = 0;
  for (int r = 0; r < g_size; ++r) offsets[r] = total, total += lengths[r];
  std::string all(static_cast<size_t>(total), '\0');
  check(MPI_Allgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(),
                       MPI_CHAR, g_comm),
        "MPI_Allgatherv");
  std::vector<std::string> out;
  for (int r = 0; r < g_size; ++r) out.push_back(all.substr(offsets[r], lengths[r]));
  return out;
}

std::vector<int64_t> allgather(int64_t mine) {
  std::vector<int64_t> all(g_size);
  check(MPI_Allgather(&mine, 1, MPI_INT64_T, all.data(), 1, MPI_INT64_T, g_comm), "MPI_Allgather");
  return all;
}

// "fc1.weight float32 [256,1152]": what the ranks must agree on, one line per tensor.
std::vector<std::string> describe_parameters(const ParamList& params) {
  std::vector<std::string> lines;
  for (const NamedParam& p : params)
    lines.push_back(fmt::format("parameter '{}' {} {}", p.name, p.param.dtype(), p.param.shape()));
  for (const NamedBuffer& b : params.buffers())
    lines.push_back(fmt::format("buffer '{}' {} {}", b.name, b.value.dtype(), b.value.shape()));
  return lines;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

// ---- the world ------------------------------------------------------------------------------

// Whether an MPI launcher (mpirun, mpiexec, srun) started this process: OpenMPI, MPICH's hydra
// and PMIx each leave their variables.
bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(name)) return true;
  return false;
}

World::World(int& argc, char**& argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (g_comm != MPI_COMM_NULL) fail("dg::dist::World: a World exists already in this process");
  // Started on its own, the program is a world of one and leaves MPI alone: no singleton
  // runtime to start (OpenMPI would spawn a daemon), nothing for the sanitizers to trip on.
  if (!initialized && !launched_by_mpi()) return;
  if (!initialized) check(MPI_Init(&argc, &argv), "MPI_Init");
  check(MPI_Comm_dup(MPI_COMM_WORLD, &g_comm), "MPI_Comm_dup");
  // Errors come back as return codes (then dg::Error), not as an abort without a message.
  MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(g_comm, &rank_);
  MPI_Comm_size(g_comm, &size_);
  g_rank = rank_;
  g_size = size_;
}

World::~World() {
  if (g_comm == MPI_COMM_NULL) return;  // a world of one that never started MPI
  MPI_Comm_free(&g_comm);
  g_comm = MPI_COMM_NULL;
  g_rank = 0;
  g_size = 1;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::string World::host() const {
  if (g_comm == MPI_COMM_NULL) return "localhost";
  char name[MPI_MAX_PROCESSOR_NAME];
  int length = 0;
  MPI_Get_processor_name(name, &length);
  return {name, static_cast<size_t>(length)};
}

int rank() { return g_rank; }
int size() { return g_size; }

double sum(double local) { return sum(std::vector<double>{local})[0]; }

std::vector<double> sum(std::vector<double> local) {
  if (!active()) return local;
  check(MPI_Allreduce(MPI_IN_PLACE, local.data(), static_cast<int>(local.size()), MPI_DOUBLE,
                      MPI_SUM, g_comm),
        "MPI_Allreduce");
  return local;
}

void barrier() {
  if (active()) check(MPI_Barrier(g_comm), "MPI_Barrier");
}

// ---- parameters -------------------------------------------------------------------------------

void check_same_parameters(const ParamList& params) {
  if (!active()) return;
  const std::vector<std::string> lines = describe_parameters(params);
  const std::vector<int64_t> counts = allgather(static_cast<int64_t>(lines.size()));
  const int64_t most = *std::max_element(counts.begin(), counts.end());
  // One fingerprint per line (0 past a rank's last): a single collective compares them all.
  std::vector<uint64_t> mine(static_cast<size_t>(most), 0), all(static_cast<size_t>(most) * g_size);
  for (size_t i = 0; i < lines.size(); ++i) mine[i] = fnv1a(lines[i]) | 1;
  check(MPI_Allgather(mine.data(), static_cast<int>(most), MPI_UINT64_T, all.data(),
                      static_cast<int>(most), MPI_UINT64_T, g_comm),
        "MPI_Allgather");
  for (int64_t i = 0; i < most; ++i) {
    bool same = true;
    for (int r = 1; r < g_size; ++r) same &= all[r * most + i] == all[i];
    if (same) continue;
    // Every rank reaches this line with the same i, so the description exchange matches up.
    const std::vector<std::string> what = allgather_strings(
        i < static_cast<int64_t>(lines.size()) ? lines[i]
                                               : fmt::format("none ({} in all)", lines.size()));
    std::string ranks;
    for (int r = 0; r < g_size; ++r)
      ranks += fmt::format("{}rank {} has {}", r ? "; " : "", r, what[r]);
    fail(
        "dg::dist: the ranks' models differ at entry {} of {} parameters and buffers: {}. Every "
        "rank must build the same model (same names, shapes and dtypes, in the same order)",
        i, most, ranks);
  }
}

void broadcast(const ParamList& params, int root) {
  if (!active()) return;
  auto bcast = [&](Tensor t, const std::string& name) {
    check(MPI_Bcast(t.raw(), static_cast<int>(t.numel()), mpi_type(t.dtype()), root, g_comm),
          ("MPI_Bcast of " + name).c_str());
  };
  for (const NamedParam& p : params) bcast(p.param.value(), p.name);
  for (const NamedBuffer& b : params.buffers()) bcast(b.value, b.name);
}

// ---- the gradient reducer ---------------------------------------------------------------------

namespace {

struct Bucket {
  DType dtype;
  std::vector<size_t> members;   // parameter indices, in bucket order
  std::vector<int64_t> offsets;  // each member's first element in the buffer
  int64_t elements = 0;
  Tensor buffer;       // the packed gradients (times the rank's sample count)
  Tensor gathered;     // deterministic mode: every rank's buffer, [size, elements]
  size_t waiting = 0;  // members not yet ready this step
  MPI_Request request = MPI_REQUEST_NULL;
};

}  // namespace

struct GradientReducer::State {
  ReducerOptions options;
  std::vector<Param> params;
  std::unordered_map<const VarImpl*, size_t> index;  // parameter -> its position in params
  std::vector<size_t> bucket_of, slot_in_bucket;
  std::vector<Bucket> buckets;
  std::vector<bool> ready;
  size_t next_launch = 0;  // buckets start in order, the same on every rank
  size_t oldest_in_flight = 0;
  double scale = 1;  // this rank's sample count this step
  ReducerStats stats;

  void pack(size_t i) {
    const size_t b = bucket_of[i];
    Bucket& bucket = buckets[b];
    const int64_t offset = bucket.offsets[slot_in_bucket[i]];
    const Tensor& g = params[i].grad();
    const int64_t n = params[i].numel();
    if (bucket.dtype == DType::f32) {
      float* dst = bucket.buffer.data<float>() + offset;
      const float* src = g.defined() ? g.data<float>() : nullptr;
      const auto s = static_cast<float>(scale);
      for (int64_t k = 0; k < n; ++k) dst[k] = src ? src[k] * s : 0.0f;
    } else {
      double* dst = bucket.buffer.data<double>() + offset;
      const double* src = g.defined() ? g.data<double>() : nullptr;
      for (int64_t k = 0; k < n; ++k) dst[k] = src ? src[k] * scale : 0.0;
    }
    ready[i] = true;
    --bucket.waiting;
  }

  void launch(Bucket& bucket) {
    const MPI_Datatype type = mpi_type(bucket.dtype);
    const int n = static_cast<int>(bucket.elements);
    if (options.deterministic)
      check(MPI_Iallgather(bucket.buffer.raw(), n, type, bucket.gathered.raw(), n, type, g_comm,
                           &bucket.request),
            "MPI_Iallgather");
    else
      check(MPI_Iallreduce(MPI_IN_PLACE, bucket.buffer.raw(), n, type, MPI_SUM, g_comm,
                           &bucket.request),
            "MPI_Iallreduce");
  }

  // Starts every bucket whose gradients are all packed, in order (a later bucket that is ready
  // first waits for the earlier ones: every rank must start the same collectives in the same
  // order), then lets MPI advance the oldest exchange still in flight.
  void launch_ready_and_poll() {
    while (next_launch < buckets.size() && buckets[next_launch].waiting == 0)
      launch(buckets[next_launch++]);
    poll();
  }

  // Lets MPI advance the exchanges in flight (called after every VJP of the pass).
  void poll() {
    while (oldest_in_flight < next_launch) {
      int done = 0;
      check(MPI_Test(&buckets[oldest_in_flight].request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (!done) break;
      ++oldest_in_flight;
    }
  }

  void on_ready(const Var& leaf) {
    auto it = index.find(leaf.impl());
    if (it == index.end() || ready[it->second]) return;
    pack(it->second);
    launch_ready_and_poll();
  }

  // Writes sum / total_samples back into each parameter's .grad.
  template <class T>
  void unpack(Bucket& bucket, double total) {
    const T* summed = bucket.buffer.data<T>();
    if (options.deterministic) {
      // Rank 0's buffer, plus rank 1's, plus ...: the same order on every rank.
      T* out = bucket.buffer.data<T>();
      const T* all = bucket.gathered.data<T>();
      for (int64_t k = 0; k < bucket.elements; ++k) {
        T s = all[k];
        for (int r = 1; r < g_size; ++r) s += all[r * bucket.elements + k];
        out[k] = s;
      }
    }
    const auto samples = static_cast<T>(total);
    for (size_t m = 0; m < bucket.members.size(); ++m) {
      Param& p = params[bucket.members[m]];
      Tensor& g = p.mutable_grad();
      if (!g.defined()) g = Tensor::zeros(p.shape(), p.dtype());
      T* dst = g.data<T>();
      const T* src = summed + bucket.offsets[m];
      const int64_t n = p.numel();  // hoisted: the loop is over 300k elements in the classifier
      for (int64_t k = 0; k < n; ++k) dst[k] = src[k] / samples;
    }
  }
};

GradientReducer::GradientReducer(const ParamList& params, ReducerOptions options)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.options = options;
  if (!(options.bucket_mb > 0))
    fail("GradientReducer: bucket_mb must be positive, got {}", options.bucket_mb);
  check_same_parameters(params);
  if (options.broadcast_parameters) broadcast(params);
  s.params = params.params();
  const size_t n = s.params.size();
  s.bucket_of.resize(n);
  s.slot_in_bucket.resize(n);
  s.ready.assign(n, false);
  const auto cap = static_cast<int64_t>(options.bucket_mb * 1024 * 1024);
  // Reverse registration order: a model's last layers are differentiated first, so their
  // bucket is ready first (as DDP does).
  for (size_t k = n; k-- > 0;) {
    const Param& p = s.params[k];
    s.index.emplace(p.impl(), k);
    const int64_t bytes = p.numel() * static_cast<int64_t>(dtype_size(p.dtype()));
    if (s.buckets.empty() || s.buckets.back().dtype != p.dtype() ||
        (s.buckets.back().elements > 0 &&
         (s.buckets.back().elements * static_cast<int64_t>(dtype_size(p.dtype())) + bytes > cap)))
      s.buckets.push_back({.dtype = p.dtype()});
    Bucket& b = s.buckets.back();
    s.bucket_of[k] = s.buckets.size() - 1;
    s.slot_in_bucket[k] = b.members.size();
    b.members.push_back(k);
    b.offsets.push_back(b.elements);
    b.elements += p.numel();
  }
  for (Bucket& b : s.buckets) {
    b.buffer = Tensor::zeros({b.elements}, b.dtype);
    if (options.deterministic) b.gathered = Tensor::zeros({g_size, b.elements}, b.dtype);
    s.stats.bytes += b.elements * static_cast<int64_t>(dtype_size(b.dtype));
  }
  s.stats.buckets = static_cast<int64_t>(s.buckets.size());
}

GradientReducer::~GradientReducer() {
  // An exception between launch and wait (a failed VJP) leaves exchanges in flight: finish them,
  // so that MPI does not write into freed buffers.
  if (!state_) return;
  for (size_t b = state_->oldest_in_flight; b < state_->next_launch; ++b)
    if (state_->buckets[b].request != MPI_REQUEST_NULL)
      MPI_Wait(&state_->buckets[b].request, MPI_STATUS_IGNORE);
}

const ReducerStats& GradientReducer::stats() const { return state_->stats; }
const ReducerOptions& GradientReducer::options() const { return state_->options; }

void GradientReducer::backward(const Var& loss, int64_t local_samples, int64_t step) {
  State& s = *state_;
  const auto start = std::chrono::steady_clock::now();
  if (local_samples < 1)
    fail("GradientReducer::backward: local_samples must be at least 1, got {}", local_samples);
  if (!active()) {
    dg::backward(loss);
    ++s.stats.steps;
    s.stats.total_seconds += seconds_since(start);
    return;
  }
  // One small exchange first: the ranks must be at the same step (a rank that skipped or
  // repeated one would pair its gradients with another step's and, later, hang), and the total
  // sample count weights the average.
  const int64_t mine[2] = {step >= 0 ? step : s.stats.steps, local_samples};
  std::vector<int64_t> all(2 * static_cast<size_t>(g_size));
  check(MPI_Allgather(mine, 2, MPI_INT64_T, all.data(), 2, MPI_INT64_T, g_comm), "MPI_Allgather");
  double total = 0;
  bool same_step = true;
  for (int r = 0; r < g_size; ++r) {
    same_step &= all[2 * r] == all[0];
    total += static_cast<double>(all[2 * r + 1]);
  }
  if (!same_step) {
    std::string steps;
    for (int r = 0; r < g_size; ++r)
      steps += fmt::format("{}rank {}: step {}", r ? ", " : "", r, all[2 * r]);
    fail(
        "GradientReducer::backward: the ranks are at different steps ({}): a rank skipped or "
        "repeated a step, so their gradients would be averaged with another step's",
        steps);
  }
  s.scale = static_cast<double>(local_samples);
  std::fill(s.ready.begin(), s.ready.end(), false);
  for (Bucket& b : s.buckets) b.waiting = b.members.size();
  s.next_launch = s.oldest_in_flight = 0;

  dg::backward(loss, {},
               {.on_leaf_grad_ready = [&s](const Var& leaf) { s.on_ready(leaf); },
                .after_each_vjp = [&s] { s.poll(); }});
  // Parameters the pass did not reach (unused this step, or the loss itself): their .grad as it
  // is, zeros if none.
  for (size_t i = 0; i < s.params.size(); ++i)
    if (!s.ready[i]) s.pack(i);
  s.launch_ready_and_poll();
  const auto waiting = std::chrono::steady_clock::now();
  for (size_t b = s.oldest_in_flight; b < s.buckets.size(); ++b)
    check(MPI_Wait(&s.buckets[b].request, MPI_STATUS_IGNORE), "MPI_Wait");
  s.oldest_in_flight = s.buckets.size();
  s.stats.wait_seconds += seconds_since(waiting);
  for (Bucket& b : s.buckets) {
    if (b.dtype == DType::f32)
      s.unpack<float>(b, total);
    else
      s.unpack<double>(b, total);
  }
  ++s.stats.steps;
  s.stats.total_seconds += seconds_since(start);
}

}  // namespace dg::dist
