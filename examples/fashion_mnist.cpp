// Fashion-MNIST classifier: two convolutions with pooling and two fully connected layers,
// written as one expression, trained on the 60,000 training images and evaluated on the
// 10,000 test images of the real data set (Debian's dataset-fashion-mnist).
//
//   build/bin/fashion_mnist [--epochs 8] [--batch-size 64] [--lr 0.001] [--seed 1]
//                           [--threads 0] [--data DIR] [--out DIR] [--limit N] [--test-limit N]
//                           [--resume] [--profile]
//
// Prints per-epoch loss, accuracy and images/s, writes the model's graph (model.svg) and a
// checkpoint (model.safetensors) to --out; the last line is `test accuracy: 0.XXXX`. With
// --profile, the first epoch's training steps are timed op by op (dg::Profiler) and the table is
// printed after that epoch and written to profile.txt.
#include <deltagraph/deltagraph.h>

#include <fmt/core.h>
#include "classifier.h"
#include "flags.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

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
  const Flags flags = parse(argc, argv);
  if (flags.threads > 0) dg::set_num_threads(flags.threads);
  std::filesystem::create_directories(flags.out);
  const dg::Dataset train = dg::load_mnist(flags.data, "train", flags.limit);
  const dg::Dataset test = dg::load_mnist(flags.data, "t10k", flags.test_limit);
  const dg::Normalization norm = dg::compute_normalization(train.images);
  fmt::print("Fashion-MNIST: {} training and {} test images from {}, {} threads\n", train.size(),
             test.size(), flags.data, dg::num_threads());

  Classifier model(flags.seed);
  fmt::print("{}", model.params.summary());
  dg::Adam optimizer(model.params, {.lr = flags.lr});
  const dg::CosineLR schedule(flags.lr, static_cast<double>(flags.epochs));
  const std::string checkpoint = flags.out + "/model.safetensors";
  int64_t first_epoch = 0;
  if (flags.resume && std::filesystem::exists(checkpoint)) {
    first_epoch = dg::load_checkpoint(checkpoint, model.params, &optimizer).epoch;
    fmt::print("resumed from {} after epoch {}\n", checkpoint, first_epoch);
  }

  const dg::Batches probe(train, {.batch_size = flags.batch_size, .drop_last = true});
  dg::Progress progress(flags.epochs, probe.size());
  for (int64_t epoch = first_epoch; epoch < flags.epochs; ++epoch) {
    const dg::Batches batches(
        train, {.batch_size = flags.batch_size,
                .seed = flags.seed,
                .epoch = epoch,
                // every batch the same size: no odd buffer sizes once an epoch
                .drop_last = true,
                .augment = {.crop_padding = flags.crop_padding, .horizontal_flip = flags.flip}});
    progress.start_epoch(epoch);
    std::optional<dg::Profiler> profiler;
    if (flags.profile && epoch == first_epoch) profiler.emplace();
    for (const dg::Batch& batch : batches) {
      optimizer.set_lr(
          schedule(static_cast<double>(epoch) + static_cast<double>(batch.index) / batches.size()));
      dg::Tape tape;
      dg::Var loss = dg::softmax_xent(model(dg::input(dg::normalize(batch.images, norm))),
                                      batch.labels, {.label_smoothing = flags.label_smoothing});
      dg::backward(loss);
      optimizer.step();
      optimizer.zero_grad();
      progress.update(batch.index, batch.images.size(0), loss.item());
    }
    if (profiler) {
      const std::string table = profiler->table();
      fmt::print("where the time of epoch {}'s training steps went:\n{}", epoch + 1, table);
      std::ofstream(flags.out + "/profile.txt") << table;
      profiler.reset();
    }
    const double test_accuracy = accuracy(model, test, norm);
    progress.end_epoch(fmt::format("test accuracy {:.4f}", test_accuracy));
    dg::save_checkpoint(checkpoint, model.params, &optimizer, {.epoch = epoch + 1});
  }

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
  fmt::print("graph: {}/model.svg, checkpoint: {}\n", flags.out, checkpoint);
  fmt::print("test accuracy: {:.4f}\n", accuracy(model, test, norm));
  return 0;
} catch (const dg::Error& e) {
  fmt::print(stderr, "fashion_mnist: {}\n", e.what());
  return 1;
}
