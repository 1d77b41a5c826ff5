// Fashion-MNIST classifier: two convolutions with pooling and two fully connected layers,
// written as one expression, trained on the 60,000 training images and evaluated on the
// 10,000 test images of the real data set (Debian's dataset-fashion-mnist).
//
//   build/bin/fashion_mnist [--epochs 8] [--batch-size 64] [--lr 0.001] [--seed 1]
//                           [--threads 0] [--data DIR] [--out DIR] [--limit N] [--test-limit N]
//                           [--resume] [--profile]
//
// Prints per-epoch loss, accuracy and images/s, writes the model's graph (model.svg), the trained
// model as ONNX (onnx/model.onnx: raw pixels [N,1,28,28] in [0, 1] -> logits [N,10]) and a
// checkpoint (model.safetensors) to --out; the last line is `test accuracy: 0.XXXX`. With
// --profile, the first epoch's training steps are timed op by op (dg::Profiler) and the table is
// printed after that epoch and written to profile.txt.
//
// On several processes (built with MPI): `mpirun -np 2 build/bin/fashion_mnist ...` takes the
// same flags; --batch-size is the global batch, each rank trains on its share of every batch and
// the gradients are averaged (dg::dist::GradientReducer). Rank 0 prints, and writes the
// checkpoint and the graph; the test accuracy counts all ranks' shares of the test set.
#include <deltagraph/deltagraph.h>

#include <fmt/core.h>
#include "classifier.h"
#include "flags.h"
#ifdef DG_HAVE_MPI
#include <deltagraph/distributed/distributed.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

namespace {

using examples::accuracy;
using examples::Classifier;

struct Flags : examples::TrainingFlags {
  bool resume = false;
  bool profile = false;
  int64_t crop_padding = 0;
  bool flip = true;
  double label_smoothing = 0.1;
  Flags() {
    epochs = 14;
    batch_size = 128;
    lr = 3e-3;
    out = "out/fashion_mnist";
  }
};

Flags parse(int argc, char** argv) {
  Flags f;
  for (examples::FlagReader r(argc, argv); r.next();) {
    const std::string& a = r.flag();
    if (f.read(r)) continue;
    if (a == "--resume")
      f.resume = true;
    else if (a == "--profile")
      f.profile = true;
    else if (a == "--crop-padding")
      f.crop_padding = r.integer();
    else if (a == "--no-flip")
      f.flip = false;
    else if (a == "--label-smoothing")
      f.label_smoothing = r.real();
    else if (a == "--help" || a == "-h") {
      fmt::print(
          "usage: fashion_mnist [--epochs N] [--batch-size N] [--lr X] [--seed N] [--threads N] "
          "[--data DIR] [--out DIR] [--limit N] [--test-limit N] [--crop-padding N] [--no-flip] "
          "[--label-smoothing X] [--resume] [--profile]\n");
      std::exit(0);
    } else {
      dg::fail("unknown argument '{}' (try --help)", a);
    }
  }
  f.check();
  return f;
}

}  // namespace

int main(int argc, char** argv) try {
#ifdef DG_HAVE_MPI
  dg::dist::World world(argc, argv);  // a world of one without mpirun
  const int rank = world.rank(), ranks = world.size();
#else
  const int rank = 0, ranks = 1;
#endif
  const bool root = rank == 0;
  const Flags flags = parse(argc, argv);
  if (flags.threads > 0) {
    dg::set_num_threads(flags.threads);
  } else if (ranks > 1) {
    // The ranks on this machine share its cores.
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const int here = local ? std::max(1, std::atoi(local)) : ranks;
    dg::set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / here));
  }
  if (flags.batch_size < ranks)
    dg::fail("--batch-size {} is the global batch and cannot be split over {} processes",
             flags.batch_size, ranks);
  if (root) std::filesystem::create_directories(flags.out);
  const dg::Dataset train = dg::load_mnist(flags.data, "train", flags.limit);
  const dg::Dataset test = dg::load_mnist(flags.data, "t10k", flags.test_limit);
  const dg::Normalization norm = dg::compute_normalization(train.images);
  if (root)
    fmt::print("Fashion-MNIST: {} training and {} test images from {}, {}{} threads\n",
               train.size(), test.size(), flags.data,
               ranks > 1 ? fmt::format("{} processes x ", ranks) : "", dg::num_threads());

  Classifier model(flags.seed);
  if (root) fmt::print("{}", model.params.summary());
  dg::Adam optimizer(model.params, {.lr = flags.lr});
  const dg::CosineLR schedule(flags.lr, static_cast<double>(flags.epochs));
  const std::string checkpoint = flags.out + "/model.safetensors";
  int64_t first_epoch = 0;
  if (flags.resume && std::filesystem::exists(checkpoint)) {
    // Every rank loads the checkpoint rank 0 wrote (with any number of ranks before).
    first_epoch = dg::load_checkpoint(checkpoint, model.params, &optimizer).epoch;
    if (root) fmt::print("resumed from {} after epoch {}\n", checkpoint, first_epoch);
  }
#ifdef DG_HAVE_MPI
  // Checks that every rank built the same model and starts them all from rank 0's values.
  dg::dist::GradientReducer reducer(model.params);
#endif
  // Each rank counts the correct answers on its share of the test set; they are summed.
  const int64_t test_begin = rank * test.size() / ranks;
  const dg::Dataset test_share =
      test.slice(test_begin, (rank + 1) * test.size() / ranks - test_begin);
  auto test_accuracy = [&] {
#ifdef DG_HAVE_MPI
    // Batch norm's running statistics are each rank's own: evaluate with rank 0's everywhere.
    dg::dist::broadcast(model.params);
#endif
    double correct =
        std::round(accuracy(model, test_share, norm) * static_cast<double>(test_share.size()));
#ifdef DG_HAVE_MPI
    correct = dg::dist::sum(correct);
#endif
    return correct / static_cast<double>(test.size());
  };

  const dg::Batches probe(train, {.batch_size = flags.batch_size, .drop_last = true});
  dg::Progress progress(flags.epochs, probe.size());
  for (int64_t epoch = first_epoch; epoch < flags.epochs; ++epoch) {
    const dg::Batches batches(
        train, {.batch_size = flags.batch_size,
                .seed = flags.seed,
                .epoch = epoch,
                // every batch the same size: no odd buffer sizes once an epoch
                .drop_last = true,
                .augment = {.crop_padding = flags.crop_padding, .horizontal_flip = flags.flip},
                // with several processes, this rank's share of every batch
                .shard = rank,
                .shards = ranks});
    if (root) progress.start_epoch(epoch);
    std::optional<dg::Profiler> profiler;
    if (flags.profile && epoch == first_epoch) profiler.emplace();
    for (const dg::Batch& batch : batches) {
      optimizer.set_lr(
          schedule(static_cast<double>(epoch) + static_cast<double>(batch.index) / batches.size()));
      dg::Tape tape;
      dg::Var loss = dg::softmax_xent(model(dg::input(dg::normalize(batch.images, norm))),
                                      batch.labels, {.label_smoothing = flags.label_smoothing});
#ifdef DG_HAVE_MPI
      reducer.backward(loss, batch.labels.size(0), epoch * batches.size() + batch.index);
#else
      dg::backward(loss);
#endif
      optimizer.step();
      optimizer.zero_grad();
      // The loss of rank 0's share; the images of all ranks' shares.
      if (root) progress.update(batch.index, batch.images.size(0) * ranks, loss.item());
    }
    if (profiler && root) {
      const std::string table = profiler->table();
      fmt::print("where the time of epoch {}'s training steps went:\n{}", epoch + 1, table);
      std::ofstream(flags.out + "/profile.txt") << table;
    }
    profiler.reset();
    const double epoch_accuracy = test_accuracy();
    if (root) {
      progress.end_epoch(fmt::format("test accuracy {:.4f}", epoch_accuracy));
      dg::save_checkpoint(checkpoint, model.params, &optimizer, {.epoch = epoch + 1});
    }
  }
  const double final_accuracy = test_accuracy();
  if (!root) return 0;
  // The model's graph, drawn from one recorded forward pass with its loss, in evaluation mode
  // (the pass must not move batch norm's running statistics).
  model.params.eval();
  {
    dg::Tape tape;
    const dg::Dataset few = test.slice(0, 8);
    dg::Var logits = model(dg::input(dg::normalize(few.images, norm), "images"));
    dg::Var loss = dg::softmax_xent(logits, dg::input(few.labels, "labels")).named("loss");
    dg::render({loss}, flags.out + "/model.svg", {.title = "Fashion-MNIST classifier"});
  }
  // The trained classifier as an ONNX model (inference graph) that takes raw pixels in [0, 1]:
  // the normalisation is its first two ops. The images are a variable so that those ops, which
  // involve no parameter, are recorded too rather than folded into a constant.
  {
    dg::Tape tape;
    const dg::Var pixels = dg::variable(test.slice(0, 8).images, "pixels");
    const dg::Var normalized =
        dg::mul_scalar(dg::add_scalar(pixels, -norm.mean[0]), 1.0 / norm.std[0]);
    dg::Var logits = model(normalized).named("logits");
    // out/onnx: model.onnx and test_data_set_0 (these 8 test images and deltagraph's logits),
    // the layout of ONNX's conformance tests: `dg onnx-test out/onnx` and onnxruntime
    // (tools/onnxruntime/run-test.js) check the export against them.
    dg::export_onnx_test_folder({pixels}, {logits}, flags.out + "/onnx",
                                {.graph_name = "fashion_mnist_classifier"});
  }
  fmt::print("graph: {}/model.svg, ONNX model: {}/onnx/model.onnx, checkpoint: {}\n", flags.out,
             flags.out, checkpoint);
  fmt::print("test accuracy: {:.4f}\n", final_accuracy);
  return 0;
} catch (const dg::Error& e) {
  fmt::print(stderr, "fashion_mnist: {}\n", e.what());
  return 1;
}
