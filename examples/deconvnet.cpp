// Zeiler-Fergus DeconvNet projections ("Visualizing and Understanding Convolutional Networks",
// 2014) of the Fashion-MNIST classifier's second convolutional layer, on real test images.
//
// For a few conv2 feature maps, the strongest (pooled) activations over the test images are
// projected back to pixel space through the network itself: keep one activation and zero every
// other, undo pool2 with max_unpool2d through that image's own switches (the positions its
// maxima came from), rectify, and filter with conv_transpose2d by conv2's weights (tied: the same
// tensor, read as the adjoint); then the same through pool1's switches and conv1's weights. The
// result shows which pixel pattern the feature responds to, next to the image that caused it.
//
//   build/bin/deconvnet [--checkpoint out/fashion_mnist/model.safetensors] [--train]
//                       [--epochs 1] [--batch-size 64] [--lr 0.001] [--seed 1] [--threads 0]
//                       [--data DIR] [--out DIR] [--limit 10000] [--test-limit N] [--features 8]
//                       [--top 6]
//
// Uses the classifier that fashion_mnist saved if the checkpoint is there; otherwise (or with
// --train) trains the same classifier briefly. Writes projections.png to --out; the last line
// ends with `all inside their receptive fields`.
#include <deltagraph/deltagraph.h>

#include <fmt/core.h>
#include "classifier.h"
#include "flags.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

using examples::accuracy;
using examples::Classifier;
using examples::Conv2Activations;

struct Flags : examples::TrainingFlags {
  std::string checkpoint = "out/fashion_mnist/model.safetensors";
  bool train = false;    // train even if the checkpoint exists
  int64_t features = 8;  // conv2 feature maps shown, one per row
  int64_t top = 6;       // strongest activations projected per feature map
  Flags() {
    out = "out/deconvnet";
    limit = 10000;  // training images when training here; test_limit: images searched
  }
};

constexpr const char* kUsage =
    "usage: deconvnet [--checkpoint PATH] [--train] [--epochs N] [--batch-size N] [--lr X]\n"
    "                 [--seed N] [--threads N] [--data DIR] [--out DIR] [--limit N]\n"
    "                 [--test-limit N] [--features K] [--top T]\n"
    "  --checkpoint PATH  the classifier fashion_mnist saved\n"
    "                     (default out/fashion_mnist/model.safetensors); if it is absent,\n"
    "                     a classifier is trained briefly instead\n"
    "  --train            train the classifier here even if the checkpoint exists\n"
    "  --limit N          when training here, train on the first N training images\n"
    "                     (default 10000; -1: all 60000)\n"
    "  --test-limit N     search the first N test images for strong activations\n"
    "                     (default -1: all 10000)\n"
    "  --features K       conv2 feature maps to show, those with the strongest activations\n"
    "                     (default 8)\n"
    "  --top T            activations projected per feature map (default 6)\n";

Flags parse(int argc, char** argv) {
  Flags f;
  for (examples::FlagReader r(argc, argv); r.next();) {
    const std::string& a = r.flag();
    if (a == "--checkpoint")
      f.checkpoint = r.value();
    else if (a == "--train")
      f.train = true;
    else if (f.read(r))
      continue;
    else if (a == "--features")
      f.features = r.integer();
    else if (a == "--top")
      f.top = r.integer();
    else if (a == "--help" || a == "-h") {
      fmt::print("{}", kUsage);
      std::exit(0);
    } else {
      dg::fail("unknown argument '{}' (try --help)", a);
    }
  }
  f.check();
  if (f.features < 1 || f.features > 64)
    dg::fail("--features must be between 1 and 64 (conv2 has 64 maps), got {}", f.features);
  if (f.top < 1) dg::fail("--top must be at least 1, got {}", f.top);
  return f;
}

constexpr std::array<const char*, 10> kClassNames = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

// The short training used when there is no checkpoint: Adam with a cosine schedule, as in
// fashion_mnist.
void train_classifier(Classifier& model, const dg::Dataset& train, const dg::Normalization& norm,
                      const Flags& flags) {
  dg::Adam optimizer(model.params, {.lr = flags.lr});
  const dg::CosineLR schedule(flags.lr, static_cast<double>(flags.epochs));
  const dg::Batches probe(train, {.batch_size = flags.batch_size});
  dg::Progress progress(flags.epochs, probe.size());
  for (int64_t epoch = 0; epoch < flags.epochs; ++epoch) {
    const dg::Batches batches(train,
                              {.batch_size = flags.batch_size, .seed = flags.seed, .epoch = epoch});
    progress.start_epoch(epoch);
    for (const dg::Batch& batch : batches) {
      optimizer.set_lr(
          schedule(static_cast<double>(epoch) + static_cast<double>(batch.index) / batches.size()));
      dg::Tape tape;
      dg::Var loss =
          dg::softmax_xent(model(dg::input(dg::normalize(batch.images, norm))), batch.labels);
      dg::backward(loss);
      optimizer.step();
      optimizer.zero_grad();
      progress.update(batch.index, batch.images.size(0), loss.item());
    }
    progress.end_epoch();
  }
}

// One activation to project: feature map `feature` of test image `image`, at flat position
// `position` of the 7x7 pooled map.
struct Activation {
  float value = 0;
  int64_t image = 0;
  int64_t feature = 0;
  int64_t position = 0;
};

// For every conv2 feature map, each image's strongest pooled activation, sorted strongest
// first (one entry per image, so the top ones come from different images).
std::vector<std::vector<Activation>> strongest_per_image(const Classifier& model,
                                                         const dg::Dataset& images,
                                                         const dg::Normalization& norm) {
  std::vector<std::vector<Activation>> per_feature(64);
  dg::NoGrad no_grad;
  for (int64_t start = 0; start < images.size(); start += 500) {
    const int64_t count = std::min<int64_t>(500, images.size() - start);
    const dg::Tensor pooled =
        model.features(dg::input(dg::normalize(images.slice(start, count).images, norm)))
            .pooled2.value();
    const float* p = pooled.data<float>();
    for (int64_t n = 0; n < count; ++n)
      for (int64_t f = 0; f < 64; ++f) {
        const float* map = p + (n * 64 + f) * 49;
        const int64_t best = std::max_element(map, map + 49) - map;
        per_feature[f].push_back({map[best], start + n, f, best});
      }
  }
  for (auto& list : per_feature)
    std::stable_sort(list.begin(), list.end(),
                     [](const Activation& a, const Activation& b) { return a.value > b.value; });
  return per_feature;
}

// The DeconvNet: each activation alone, projected down to pixels through its image's switches
// with the layers' own weights. Returns [M,1,28,28], one projection per activation.
dg::Tensor project_to_pixels(const Classifier& model, const std::vector<Activation>& activations,
                             const dg::Dataset& images, const dg::Normalization& norm) {
  dg::NoGrad no_grad;
  const auto count = static_cast<int64_t>(activations.size());
  std::vector<int64_t> which;
  for (const Activation& a : activations) which.push_back(a.image);
  // The switches are those of each activation's own image: they route the signal back to the
  // pixels that won each max-pool.
  const Conv2Activations forward =
      model.features(dg::input(dg::normalize(dg::take_rows(images.images, which), norm)));

  dg::Tensor kept = dg::Tensor::zeros({count, 64, 7, 7});
  for (int64_t m = 0; m < count; ++m)
    kept.data<float>()[(m * 64 + activations[m].feature) * 49 + activations[m].position] =
        activations[m].value;

  // Layer 2 undone: unpool, rectify, filter with conv2's weights. A conv_transpose2d weight is
  // [in, out, kH, kW], so conv2.weight [64,32,3,3] maps 64 channels back to 32 as it stands, and
  // padding 1 undoes the forward padding 1 (14x14 stays 14x14).
  dg::Var x =
      dg::max_unpool2d(kept, forward.switches2, {.kernel_size = 2, .output_size = {14, 14}});
  x = dg::conv_transpose2d(dg::relu(x), model.conv2.weight, {.padding = 1});  // [M,32,14,14]
  // Layer 1 undone the same way, down to one channel of pixels.
  x = dg::max_unpool2d(x, forward.switches1, {.kernel_size = 2, .output_size = {28, 28}});
  x = dg::conv_transpose2d(dg::relu(x), model.conv1.weight, {.padding = 1});  // [M,1,28,28]
  return x.value();
}

// The input pixels a pooled conv2 unit at (row, col) of the 7x7 map can see: rows
// [4*row - 3, 4*row + 6] and the same for columns (two 3x3 convolutions with padding 1, each
// followed by a 2x2 pool), clipped to the image.
struct Window {
  int64_t top, left, bottom, right;  // inclusive
  bool contains(int64_t r, int64_t c) const {
    return r >= top && r <= bottom && c >= left && c <= right;
  }
};
Window receptive_field(int64_t position) {
  const int64_t row = position / 7, col = position % 7;
  return {std::max<int64_t>(0, 4 * row - 3), std::max<int64_t>(0, 4 * col - 3),
          std::min<int64_t>(27, 4 * row + 6), std::min<int64_t>(27, 4 * col + 6)};
}

}  // namespace

int main(int argc, char** argv) try {
  const auto started = std::chrono::steady_clock::now();
  const Flags flags = parse(argc, argv);
  if (flags.threads > 0) dg::set_num_threads(flags.threads);
  // Winograd's tile transforms leave rounding noise (~1e-7 of the largest value) on outputs
  // whose 3x3 window sees only zeros; the check below wants projections exactly inside their
  // receptive fields, so the convolutions here run the direct algorithm.
  dg::set_winograd(false);
  std::filesystem::create_directories(flags.out);
  const bool use_checkpoint = !flags.train && std::filesystem::exists(flags.checkpoint);
  // A classifier sees its inputs normalised with the statistics of its own training images: all
  // 60,000 for fashion_mnist's default run, the first `limit` when it is trained here.
  const dg::Dataset train = dg::load_mnist(flags.data, "train", use_checkpoint ? -1 : flags.limit);
  const dg::Dataset test = dg::load_mnist(flags.data, "t10k", flags.test_limit);
  const dg::Normalization norm = dg::compute_normalization(train.images);
  fmt::print("Fashion-MNIST: {} training and {} test images from {}, {} threads\n", train.size(),
             test.size(), flags.data, dg::num_threads());

  Classifier model(flags.seed);
  std::string provenance;
  if (use_checkpoint) {
    dg::load_checkpoint(flags.checkpoint, model.params);
    provenance = fmt::format("the classifier from {}", flags.checkpoint);
  } else {
    fmt::print(
        "{}: training the classifier for {} epoch{} on {} training images (a short training; run "
        "fashion_mnist first for the full one)\n",
        flags.train ? "--train" : fmt::format("no checkpoint at {}", flags.checkpoint),
        flags.epochs, flags.epochs == 1 ? "" : "s", train.size());
    train_classifier(model, train, norm, flags);
    dg::save_checkpoint(flags.out + "/classifier.safetensors", model.params, nullptr,
                        {.epoch = flags.epochs});
    provenance = fmt::format(
        "a classifier trained here for {} epoch{} on {} images ({}/classifier.safetensors)",
        flags.epochs, flags.epochs == 1 ? "" : "s", train.size(), flags.out);
  }
  fmt::print("using {}: test accuracy {:.4f} on {} test images\n", provenance,
             accuracy(model, test, norm), test.size());
  // From here on the classifier is only looked at: evaluation mode (batch norm on its running
  // statistics, no dropout).
  model.params.eval();

  // The feature maps whose strongest activation over the test images is largest, and for each
  // its `top` strongest activations (from different images).
  const std::vector<std::vector<Activation>> per_feature = strongest_per_image(model, test, norm);
  std::vector<int64_t> order(64);
  for (int64_t f = 0; f < 64; ++f) order[f] = f;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return per_feature[a][0].value > per_feature[b][0].value;
  });
  const int64_t top = std::min(flags.top, test.size());
  std::vector<Activation> chosen;
  for (int64_t k = 0; k < flags.features; ++k) {
    const std::vector<Activation>& list = per_feature[order[k]];
    if (!(list[0].value > 0)) break;  // a dead feature map: nothing to project
    std::string line = fmt::format("conv2 feature {:2}:", order[k]);
    for (int64_t t = 0; t < top; ++t) {
      chosen.push_back(list[t]);
      line += fmt::format(" {:.2f} ({})", list[t].value,
                          kClassNames.at(test.labels.data<int64_t>()[list[t].image]));
    }
    fmt::print("{}\n", line);
  }
  if (chosen.empty())
    dg::fail("every conv2 feature map is zero on every test image: the classifier is broken");
  const int64_t rows = static_cast<int64_t>(chosen.size()) / top;

  const dg::Tensor projections = project_to_pixels(model, chosen, test, norm);

  // Each projection beside what caused it: the projection and the image patch, both cropped to
  // the 14x14 window around the unit's receptive field and drawn twice as large, then the whole
  // image with everything outside the receptive field dimmed. A projection's sign and scale are
  // arbitrary, so each is shown on grey (0.5) with its largest magnitude at black or white.
  std::vector<float> tiles;
  int64_t outside = 0;
  for (int64_t m = 0; m < static_cast<int64_t>(chosen.size()); ++m) {
    const float* projection = projections.data<float>() + m * 784;
    const float* image = test.images.data<float>() + chosen[m].image * 784;
    const Window field = receptive_field(chosen[m].position);
    float largest = 0;
    for (int64_t i = 0; i < 784; ++i) {
      largest = std::max(largest, std::abs(projection[i]));
      // By construction nothing reaches beyond the receptive field; count it if something does
      // (it would mean wrong switches or a wrong padding in the path back).
      if (projection[i] != 0 && !field.contains(i / 28, i % 28)) ++outside;
    }
    // The 14x14 window centred on the receptive field, moved inside the image at its edges.
    const int64_t top_row = std::clamp<int64_t>(field.top + field.bottom - 13, 0, 28) / 2;
    const int64_t left_col = std::clamp<int64_t>(field.left + field.right - 13, 0, 28) / 2;
    auto zoomed = [&](auto&& pixel) {
      for (int64_t r = 0; r < 28; ++r)
        for (int64_t c = 0; c < 28; ++c)
          tiles.push_back(pixel((top_row + r / 2) * 28 + left_col + c / 2));
    };
    zoomed([&](int64_t i) { return largest > 0 ? 0.5f + 0.5f * projection[i] / largest : 0.5f; });
    zoomed([&](int64_t i) { return image[i]; });
    for (int64_t i = 0; i < 784; ++i)
      tiles.push_back(field.contains(i / 28, i % 28) ? image[i] : 0.3f * image[i]);
  }
  const std::string picture = flags.out + "/projections.png";
  dg::write_png_grid(picture,
                     dg::Tensor::from(tiles, {static_cast<int64_t>(tiles.size()) / 784, 1, 28, 28}),
                     {.cols = 3 * top, .scale = 2});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print("wall time {:.1f} s\n", seconds);
  if (outside > 0)
    dg::fail(
        "{} projected pixels lie outside the receptive field of their unit: the path back is wrong",
        outside);
  fmt::print(
      "projections: {} ({} conv2 feature maps x {} strongest activations: projection, image "
      "patch, image), all inside their receptive fields\n",
      picture, rows, top);
  return 0;
} catch (const dg::Error& e) {
  fmt::print(stderr, "deconvnet: {}\n", e.what());
  return 1;
}
