// deltagraph: data-parallel training over MPI (OpenMPI or MPICH), the `distributed` layer.
//
// The same program runs as N processes (ranks), on one machine or several (mpirun); each trains
// on its own share of every batch, and every step the ranks average their gradients, so they
// stay identical and N ranks with a per-rank batch B/N follow the run of one process with batch
// B.
//
//   int main(int argc, char** argv) {
//     dg::dist::World world(argc, argv);                  // MPI_Init ... MPI_Finalize
//     ParamList params; ... build the model ...
//     dg::dist::GradientReducer reducer(params);          // checks the ranks agree, broadcasts
//     for (...) {                                          // rank 0's initial values
//       dg::Batches batches(train, {.batch_size = 128, .shard = world.rank(),
//                                   .shards = world.size()});
//       ...                                                // forward on this rank's share
//       reducer.backward(loss, b.labels.size(0), step);    // backward + averaged gradients
//       optimizer.step();
//     }
//   }
//
// What it guards against (what users of DDP and Horovod keep reporting):
// - ranks whose models differ (names, shapes, dtypes, counts) fail at once, every rank with the
//   same error naming the parameter and the ranks, instead of hanging in an allreduce;
// - a rank that skipped or repeated a step is caught at the next step, before the gradients
//   are exchanged;
// - results that change with the reduction order: `deterministic` sums every rank's gradient
//   in rank order on every rank, so the ranks agree bit for bit and reruns repeat.
// A rank that dies (killed, crashed) makes mpirun end the others, naming the lost rank.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "deltagraph/core/var.h"
#include "deltagraph/train/nn.h"

namespace dg::dist {

// The processes of this run. Construct one in main before anything else uses MPI; it calls
// MPI_Init (MPI_Finalize when it goes). Without mpirun it is a world of one.
class World {
 public:
  World(int& argc, char**& argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // This host's name (MPI_Get_processor_name).
  std::string host() const;

 private:
  int rank_ = 0, size_ = 1;
};

// The rank and size of the running World (0 and 1 when there is none).
int rank();
int size();

// Sums over the ranks (MPI_Allreduce): metrics such as the loss total and the correct count.
double sum(double local);
std::vector<double> sum(std::vector<double> local);
// Waits until every rank gets here.
void barrier();

// Throws dg::Error on every rank unless all ranks hold parameters and buffers of the same names,
// shapes and dtypes, in the same order; the message names the first that differs and the ranks.
void check_same_parameters(const ParamList& params);
// Copies rank `root`'s parameter values and buffers to every rank (after check_same_parameters).
void broadcast(const ParamList& params, int root = 0);

struct ReducerOptions {
  // Gradients are packed into buckets of about this many bytes; a bucket's allreduce starts as
  // soon as its last gradient is final, while the backward pass goes on.
  double bucket_mb = 4.0;
  // Sum every rank's gradients in rank order on every rank (an allgather, then a fixed-order
  // sum), instead of MPI's allreduce: the ranks agree bit for bit and a rerun repeats the same
  // bits, whatever algorithm and process placement MPI picks.
  bool deterministic = false;
  // Check that the ranks agree on the parameters and copy rank 0's values to all (do this
  // before training unless every rank loaded the same checkpoint).
  bool broadcast_parameters = true;
};

// Where the time of the reducer's steps went, summed since construction.
struct ReducerStats {
  int64_t steps = 0;
  int64_t buckets = 0;       // per step
  int64_t bytes = 0;         // gradient bytes per step
  double wait_seconds = 0;   // in backward(), waiting for the last allreduces after the pass
  double total_seconds = 0;  // in backward(), the pass included
};

// Averages the gradients of `params` across the ranks, bucket by bucket during the backward
// pass (started from GradOptions::on_leaf_grad_ready, advanced from after_each_vjp), in the
// same bucket order on every rank.
class GradientReducer {
 public:
  explicit GradientReducer(const ParamList& params, ReducerOptions options = {});
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // dg::backward(loss), and afterwards each parameter's .grad is the average over the ranks,
  // weighted by how many samples each rank's loss averaged (`local_samples`): with a mean loss
  // that is the gradient of the mean over all ranks' samples, as one process with the whole
  // batch would compute it. A parameter that got no gradient on a rank counts as zeros there.
  // `step` numbers the step (epoch * batches + batch, say; -1: the count of earlier calls):
  // ranks at different steps fail, all of them, before any gradient is exchanged.
  void backward(const Var& loss, int64_t local_samples = 1, int64_t step = -1);

  const ReducerStats& stats() const;
  const ReducerOptions& options() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dg::dist
