// The main job's training step on 1 or more processes: run it under mpirun (tools/bench-distributed
// does, beside PyTorch DDP). Every rank trains examples/classifier.h on its share of a global batch
// of real Fashion-MNIST images with Adam; rank 0 prints one line:
//   ranks 2 threads 1 batch 128 steps 40 step_ms 123.4 images_per_s 1037.2 wait_share 0.031
//   step_wait_share 0.020
// step_ms is the slowest rank's median step over the timed steps (after `warmup` untimed ones;
// each step starts at a barrier), wait_share the part of the reducer's time (backward pass and
// exchange) spent waiting for the exchange after the pass, step_wait_share that wait's part of
// the whole step (forward, backward, exchange, optimiser), both averaged over the ranks.
//   bench_distributed [--batch-size 128] [--steps 40] [--warmup 5] [--threads 1]
//                     [--data /usr/share/datasets/fashion-mnist] [--deterministic]
//                     [--bucket-mb X]
#include <deltagraph/deltagraph.h>
#include <deltagraph/distributed/distributed.h>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "classifier.h"

int main(int argc, char** argv) try {
  dg::dist::World world(argc, argv);
  int64_t batch_size = 128, steps = 40, warmup = 5, threads = 1;
  bool deterministic = false;
  double bucket_mb = dg::dist::ReducerOptions{}.bucket_mb;
  std::string data = "/usr/share/datasets/fashion-mnist";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) dg::fail("{} needs a value", a);
      return std::string(argv[++i]);
    };
    if (a == "--batch-size")
      batch_size = std::stoll(value());
    else if (a == "--steps")
      steps = std::stoll(value());
    else if (a == "--warmup")
      warmup = std::stoll(value());
    else if (a == "--threads")
      threads = std::stoll(value());
    else if (a == "--data")
      data = value();
    else if (a == "--deterministic")
      deterministic = true;
    else if (a == "--bucket-mb")
      bucket_mb = std::stod(value());
    else
      dg::fail("unknown argument '{}'", a);
  }
  dg::set_num_threads(static_cast<int>(threads));
  const dg::Dataset train = dg::load_mnist(data, "train", batch_size * (steps + warmup));
  const dg::Normalization norm = dg::compute_normalization(train.images);
  examples::Classifier model(1);
  dg::dist::GradientReducer reducer(model.params,
                                    {.bucket_mb = bucket_mb, .deterministic = deterministic});
  dg::Adam optimizer(model.params, {.lr = 1e-3});
  const dg::Batches batches(train, {.batch_size = batch_size,
                                    .seed = 1,
                                    .drop_last = true,
                                    .shard = world.rank(),
                                    .shards = world.size()});
  std::vector<double> times;
  double timed_seconds = 0;
  double wait_before = 0, total_before = 0;
  for (int64_t step = 0; step < warmup + steps; ++step) {
    if (step == warmup) {
      wait_before = reducer.stats().wait_seconds;
      total_before = reducer.stats().total_seconds;
    }
    dg::dist::barrier();  // the step starts together on every rank
    const auto start = std::chrono::steady_clock::now();
    const dg::Batch b = batches[step];
    dg::Tape tape;
    dg::Var loss = dg::softmax_xent(model(dg::input(dg::normalize(b.images, norm))), b.labels);
    reducer.backward(loss, b.labels.size(0), step);
    optimizer.step();
    optimizer.zero_grad();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (step >= warmup) {
      times.push_back(seconds);
      timed_seconds += seconds;
    }
  }
  // The slowest rank's median step: each rank's median, the largest of them.
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  std::vector<double> medians(static_cast<size_t>(world.size()), 0.0);
  medians[static_cast<size_t>(world.rank())] = median;
  medians = dg::dist::sum(medians);
  const double step_seconds = *std::max_element(medians.begin(), medians.end());
  const double wait = reducer.stats().wait_seconds - wait_before;
  const double total = reducer.stats().total_seconds - total_before;
  const double wait_share = dg::dist::sum(total > 0 ? wait / total : 0.0) / world.size();
  const double step_wait_share =
      dg::dist::sum(timed_seconds > 0 ? wait / timed_seconds : 0.0) / world.size();
  if (world.is_root())
    fmt::print(
        "ranks {} threads {} batch {} steps {} step_ms {:.1f} images_per_s {:.1f} wait_share "
        "{:.3f} step_wait_share {:.3f}\n",
        world.size(), threads, batch_size, steps, step_seconds * 1e3,
        static_cast<double>(batch_size) / step_seconds, wait_share, step_wait_share);
  return 0;
} catch (const dg::Error& e) {
  fmt::print(stderr, "bench_distributed: {}\n", e.what());
  return 1;
}
