// SegNet-style autoencoder on real Fashion-MNIST images (Debian's dataset-fashion-mnist).
//
// The encoder keeps the positions of its maxima (max_pool2d's indices, the "switches"); the
// decoder puts each value back where its maximum came from with max_unpool2d and fills in the
// rest with conv_transpose2d; batch norm follows each hidden convolution, as in SegNet. Trained
// to reconstruct its input with a mean squared error, it is scored against the simplest predictor
// there is: the mean training image. A second head on the same unpooled features segments garment
// from background per pixel (softmax_xent, with the ambiguous border pixels left out through
// ignore_index), weighted per class by median frequency balancing as the SegNet paper does.
//
//   build/bin/unpool_autoencoder [--epochs 3] [--batch-size 64] [--lr 0.005] [--seed 1]
//                                [--threads 0] [--data DIR] [--out DIR] [--limit 20000]
//                                [--test-limit N]
//
// Writes reconstructions.png (rows of test images, their reconstructions and garment masks), a
// checkpoint (model.safetensors) and the model as ONNX (onnx/model.onnx, with a test folder) to
// --out. The last line compares the test MSE with the mean-image baseline: `test MSE 0.00292 beats
// the mean-image baseline 0.08664 by 29.7x`.
#include <deltagraph/deltagraph.h>

#include <fmt/core.h>
#include "flags.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

struct Flags : examples::TrainingFlags {
  Flags() {
    epochs = 3;
    lr = 5e-3;
    out = "out/unpool_autoencoder";
    limit = 20000;
  }
};

constexpr const char* kUsage =
    "usage: unpool_autoencoder [--epochs N] [--batch-size N] [--lr X] [--seed N] [--threads N]\n"
    "                          [--data DIR] [--out DIR] [--limit N] [--test-limit N]\n"
    "  --limit N       train on the first N training images (default 20000; -1: all 60000)\n"
    "  --test-limit N  evaluate on the first N test images (default -1: all 10000)\n";

Flags parse(int argc, char** argv) {
  Flags f;
  for (examples::FlagReader r(argc, argv); r.next();) {
    const std::string& a = r.flag();
    if (f.read(r)) continue;
    if (a == "--help" || a == "-h") {
      fmt::print("{}", kUsage);
      std::exit(0);
    } else {
      dg::fail("unknown argument '{}' (try --help)", a);
    }
  }
  f.check();
  return f;
}

// Per-pixel classes of the segmentation head. Pixels on the boundary between garment and
// background are ambiguous (anti-aliased edges), so they are labelled kBorder and ignored by the
// loss and the scores, as PASCAL VOC does with its 255 border.
constexpr int64_t kBackground = 0, kGarment = 1, kBorder = 255;
constexpr double kGarmentThreshold = 0.05;   // pixel value above which a pixel is garment
constexpr double kSegmentationWeight = 0.1;  // of the cross-entropy, beside the reconstruction MSE

struct Outputs {
  dg::Var reconstruction;  // [N,1,28,28] in (0, 1), pixel units
  dg::Var segmentation;    // logits [N,2,28,28]: background, garment
};

// Encoder: two conv + batch norm + relu + 2x2 max-pool stages that keep their switches. Decoder:
// the mirror image, unpooling through those switches and convolving back (conv_transpose2d) to
// one channel, plus a second head on the same unpooled features that segments garment from
// background. Batch norm and its running statistics follow params' mode (train/eval).
struct UnpoolAutoencoder {
  static constexpr dg::nn::Init kXavier = dg::nn::Init::xavier_uniform;
  static constexpr dg::nn::Init kKaiming = dg::nn::Init::kaiming_uniform;
  dg::ParamList params;
  dg::nn::Conv2d enc1, enc2;
  dg::nn::ConvTranspose2d dec2, dec1, segment;
  dg::nn::BatchNorm2d enc1_bn, enc2_bn, dec2_bn;

  explicit UnpoolAutoencoder(uint64_t seed)
      : params(seed),
        // Batch norm's bias replaces the convolutions' own.
        enc1(params, "enc1", 1, 16, 3, {.padding = 1, .bias = false, .init = kKaiming}),
        enc2(params, "enc2", 16, 32, 3, {.padding = 1, .bias = false, .init = kKaiming}),
        dec2(params, "dec2", 32, 16, 3, {.padding = 1, .bias = false, .init = kKaiming}),
        // The output layers feed a sigmoid and a softmax, not a relu: Xavier's gain 1 suits them.
        dec1(params, "dec1", 16, 1, 3, {.padding = 1, .init = kXavier}),
        segment(params, "segment", 16, 2, 3, {.padding = 1, .init = kXavier}),
        enc1_bn(params, "enc1_bn", 16),
        enc2_bn(params, "enc2_bn", 32),
        dec2_bn(params, "dec2_bn", 16) {}

  // Normalised images [N,1,28,28] -> reconstructions and segmentation logits.
  Outputs operator()(const dg::Var& images) const {
    // Encoder: [N,1,28,28] -> [N,16,14,14] -> [N,32,7,7], keeping where each maximum was.
    auto [h1, switches1] = dg::max_pool2d(dg::relu(enc1_bn(enc1(images))), {.kernel_size = 2});
    auto [h2, switches2] = dg::max_pool2d(dg::relu(enc2_bn(enc2(h1))), {.kernel_size = 2});
    // Decoder: each value back to its maximum's place, then convolved: [N,16,14,14], [N,16,28,28].
    dg::Var u2 = dg::max_unpool2d(h2, switches2, {.kernel_size = 2, .output_size = {14, 14}});
    dg::Var d2 = dg::relu(dec2_bn(dec2(u2)));
    dg::Var u1 = dg::max_unpool2d(d2, switches1, {.kernel_size = 2, .output_size = {28, 28}});
    return {dg::sigmoid(dec1(u1)), segment(u1)};  // [N,1,28,28], [N,2,28,28]
  }
};

// Labels [N,28,28] for images [N,1,28,28] in [0, 1]: garment where the pixel exceeds the
// threshold, background elsewhere, kBorder where a pixel's 3x3 neighbourhood holds both.
dg::Tensor segmentation_labels(const dg::Tensor& images) {
  const int64_t count = images.size(0);
  dg::Tensor labels({count, 28, 28}, dg::DType::i64);
  const float* x = images.data<float>();
  int64_t* y = labels.data<int64_t>();
  for (int64_t n = 0; n < count; ++n)
    for (int64_t r = 0; r < 28; ++r)
      for (int64_t c = 0; c < 28; ++c) {
        bool garment = false, background = false;
        for (int64_t i = std::max<int64_t>(r - 1, 0); i <= std::min<int64_t>(r + 1, 27); ++i)
          for (int64_t j = std::max<int64_t>(c - 1, 0); j <= std::min<int64_t>(c + 1, 27); ++j)
            (x[n * 784 + i * 28 + j] > kGarmentThreshold ? garment : background) = true;
        y[n * 784 + r * 28 + c] = garment && background ? kBorder
                                  : garment             ? kGarment
                                                        : kBackground;
      }
  return labels;
}

// Median frequency balancing (Eigen & Fergus, used by SegNet): class c's weight is
// median_c(freq_c) / freq_c, where freq_c is the number of pixels of class c divided by the
// number of pixels in the images where c appears. Rare classes weigh more; ignored pixels
// (kBorder) count for nothing.
dg::Tensor median_frequency_weights(const dg::Tensor& labels, int64_t classes) {
  std::vector<double> pixels(classes, 0), image_pixels(classes, 0);
  const int64_t count = labels.size(0), plane = labels.numel() / std::max<int64_t>(count, 1);
  const int64_t* y = labels.data<int64_t>();
  for (int64_t n = 0; n < count; ++n) {
    std::vector<int64_t> in_image(classes, 0);
    for (int64_t i = 0; i < plane; ++i)
      if (y[n * plane + i] >= 0 && y[n * plane + i] < classes) ++in_image[y[n * plane + i]];
    for (int64_t c = 0; c < classes; ++c)
      if (in_image[c] > 0) {
        pixels[c] += static_cast<double>(in_image[c]);
        image_pixels[c] += static_cast<double>(plane);
      }
  }
  std::vector<double> frequency(classes);
  for (int64_t c = 0; c < classes; ++c)
    frequency[c] = image_pixels[c] > 0 ? pixels[c] / image_pixels[c] : 0.0;
  std::vector<double> sorted = frequency;
  std::sort(sorted.begin(), sorted.end());
  const double median =
      classes % 2 ? sorted[classes / 2] : (sorted[classes / 2 - 1] + sorted[classes / 2]) / 2;
  dg::Tensor weights({classes}, dg::DType::f32);
  for (int64_t c = 0; c < classes; ++c)
    weights.data<float>()[c] = frequency[c] > 0 ? static_cast<float>(median / frequency[c]) : 0.f;
  return weights;
}

// The reconstruction loss, built from the library's ops: mean((recon - target)^2).
dg::Var mean_squared_error(const dg::Var& reconstruction, const dg::Var& target) {
  dg::Var d = dg::sub(reconstruction, target);
  return dg::mean(dg::mul(d, d));
}

// Sum of squared differences between `images` and `prediction` (broadcast to them).
double squared_error_sum(const dg::Tensor& images, const dg::Tensor& prediction) {
  dg::NoGrad no_grad;
  dg::Var d = dg::sub(images, prediction);
  return dg::sum(dg::mul(d, d)).item();
}

struct Scores {
  double mse = 0;             // reconstruction, pixel units
  double pixel_accuracy = 0;  // segmentation, over the pixels that are not kBorder
  double garment_iou = 0;     // intersection over union of predicted and true garment pixels
};

// The model's scores on the test images, over batches of 500, in evaluation mode (batch norm on
// its running statistics).
Scores evaluate(const UnpoolAutoencoder& model, const dg::Dataset& test,
                const dg::Normalization& norm) {
  dg::ParamList params = model.params;  // a copy shares the mode
  params.eval();
  double squared_errors = 0;
  int64_t counted = 0, correct = 0, intersection = 0, united = 0;
  for (int64_t start = 0; start < test.size(); start += 500) {
    const dg::Dataset part = test.slice(start, std::min<int64_t>(500, test.size() - start));
    dg::NoGrad no_grad;
    const Outputs out = model(dg::input(dg::normalize(part.images, norm)));
    squared_errors += squared_error_sum(part.images, out.reconstruction.value());
    const dg::Tensor labels = segmentation_labels(part.images);
    const float* z = out.segmentation.value().data<float>();
    const int64_t* y = labels.data<int64_t>();
    for (int64_t n = 0; n < part.size(); ++n)
      for (int64_t i = 0; i < 784; ++i) {
        const int64_t label = y[n * 784 + i];
        if (label == kBorder) continue;
        const bool garment = z[(n * 2 + kGarment) * 784 + i] > z[(n * 2 + kBackground) * 784 + i];
        ++counted;
        correct += garment == (label == kGarment);
        intersection += garment && label == kGarment;
        united += garment || label == kGarment;
      }
  }
  params.train();
  return {squared_errors / static_cast<double>(test.images.numel()),
          static_cast<double>(correct) / static_cast<double>(counted),
          static_cast<double>(intersection) / static_cast<double>(std::max<int64_t>(united, 1))};
}

// Two test images of each class (the first ones in the file), so the picture shows every kind of
// garment.
std::vector<int64_t> two_per_class(const dg::Dataset& test) {
  std::vector<int64_t> first, second;
  std::vector<int> seen(10, 0);
  const int64_t* y = test.labels.data<int64_t>();
  for (int64_t n = 0; n < test.size() && second.size() < 10; ++n)
    if (seen[y[n]] < 2) (seen[y[n]]++ == 0 ? first : second).push_back(n);
  first.insert(first.end(), second.begin(), second.end());
  return first;
}

// Groups of three rows: `cols` test images, their reconstructions, and the predicted garment
// masks (white garment, black background, grey where the labels are kBorder and ignored).
void write_picture(const std::string& path, const UnpoolAutoencoder& model, const dg::Dataset& test,
                   const dg::Normalization& norm) {
  const std::vector<int64_t> chosen = two_per_class(test);
  const auto cols = static_cast<int64_t>(std::min<size_t>(10, chosen.size()));
  const dg::Tensor originals = dg::take_rows(test.images, chosen);
  const dg::Tensor labels = segmentation_labels(originals);
  Outputs out;
  {
    dg::NoGrad no_grad;
    dg::ParamList params = model.params;  // evaluation mode for the picture (a copy shares it)
    params.eval();
    out = model(dg::input(dg::normalize(originals, norm)));
  }
  const float* reconstructions = out.reconstruction.value().data<float>();
  const float* logits = out.segmentation.value().data<float>();
  auto predicted_garment = [&](int64_t n, int64_t i) {
    return logits[(n * 2 + kGarment) * 784 + i] > logits[(n * 2 + kBackground) * 784 + i];
  };
  std::vector<float> tiles;
  for (int64_t row = 0; row * cols < originals.size(0); ++row)
    for (int kind = 0; kind < 3; ++kind)
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t n = row * cols + c;
        for (int64_t i = 0; i < 784; ++i) {
          if (n >= originals.size(0))
            tiles.push_back(1.0f);  // blank tile in an incomplete row
          else if (kind == 0)
            tiles.push_back(originals.data<float>()[n * 784 + i]);
          else if (kind == 1)
            tiles.push_back(reconstructions[n * 784 + i]);
          else if (labels.data<int64_t>()[n * 784 + i] == kBorder)
            tiles.push_back(0.5f);
          else
            tiles.push_back(predicted_garment(n, i) ? 1.0f : 0.0f);
        }
      }
  const auto count = static_cast<int64_t>(tiles.size()) / 784;
  dg::write_png_grid(path, dg::Tensor::from(tiles, {count, 1, 28, 28}), {.cols = cols, .scale = 2});
}

}  // namespace

int main(int argc, char** argv) try {
  const auto started = std::chrono::steady_clock::now();
  const Flags flags = parse(argc, argv);
  if (flags.threads > 0) dg::set_num_threads(flags.threads);
  std::filesystem::create_directories(flags.out);
  const dg::Dataset train = dg::load_mnist(flags.data, "train", flags.limit);
  const dg::Dataset test = dg::load_mnist(flags.data, "t10k", flags.test_limit);
  const dg::Normalization norm = dg::compute_normalization(train.images);
  fmt::print("Fashion-MNIST: {} training and {} test images from {}, {} threads\n", train.size(),
             test.size(), flags.data, dg::num_threads());

  // The baselines: the mean training image for every test image; the training pixels' majority
  // class for every (not ignored) test pixel.
  const dg::Tensor mean_image = dg::mean(train.images, {.axes = {0}, .keepdims = true}).value();
  const double baseline_mse =
      squared_error_sum(test.images, mean_image) / static_cast<double>(test.images.numel());
  const auto fraction_garment = [](const dg::Tensor& labels) {
    const auto values = labels.values<int64_t>();
    const auto garment = std::count(values.begin(), values.end(), kGarment);
    return static_cast<double>(garment) /
           static_cast<double>(garment + std::count(values.begin(), values.end(), kBackground));
  };
  const bool majority_is_garment = fraction_garment(segmentation_labels(train.images)) > 0.5;
  const double test_garment = fraction_garment(segmentation_labels(test.images));
  const double baseline_accuracy = majority_is_garment ? test_garment : 1 - test_garment;
  fmt::print("baselines: mean-image test MSE {:.5f}; majority-class ({}) pixel accuracy {:.4f}\n",
             baseline_mse, majority_is_garment ? "garment" : "background", baseline_accuracy);

  const dg::Tensor class_weights = median_frequency_weights(segmentation_labels(train.images), 2);
  fmt::print("class weights (median frequency balancing): background {:.4f}, garment {:.4f}\n",
             class_weights.at(kBackground), class_weights.at(kGarment));

  UnpoolAutoencoder model(flags.seed);
  fmt::print("{}", model.params.summary());
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
      const Outputs out = model(dg::input(dg::normalize(batch.images, norm)));
      dg::Var loss = mean_squared_error(out.reconstruction, dg::input(batch.images)) +
                     kSegmentationWeight *
                         dg::softmax_xent(out.segmentation, segmentation_labels(batch.images),
                                          {.ignore_index = kBorder, .weight = class_weights});
      dg::backward(loss);
      optimizer.step();
      optimizer.zero_grad();
      progress.update(batch.index, batch.images.size(0), loss.item());
    }
    const Scores scores = evaluate(model, test, norm);
    progress.end_epoch(
        fmt::format("test MSE {:.5f}, pixel accuracy {:.4f}", scores.mse, scores.pixel_accuracy));
  }
  dg::save_checkpoint(flags.out + "/model.safetensors", model.params, &optimizer,
                      {.epoch = flags.epochs});

  // The trained model as ONNX (inference graph): raw pixels [N,1,28,28] in [0, 1] ->
  // reconstruction [N,1,28,28] and segmentation logits [N,2,28,28]; the normalisation is its first
  // two ops (the pixels are a variable so that they are recorded rather than folded).
  model.params.eval();
  {
    dg::Tape tape;
    // Plus a little noise for the test folder: on a flat background the convolutions give equal
    // values across a pooling window, which each runtime's rounding separates differently, so
    // their switches (and everything unpooled through them) would differ at those near-ties.
    const dg::Tensor images = test.slice(0, 4).images;
    const dg::Tensor noise = dg::Tensor::uniform(images.shape(), 4, dg::DType::f32, -0.01, 0.01);
    const dg::Var pixels = dg::variable(dg::add(images, noise).value(), "pixels");
    Outputs out = model(dg::mul_scalar(dg::add_scalar(pixels, -norm.mean[0]), 1.0 / norm.std[0]));
    // out/onnx: model.onnx and test_data_set_0 (these 4 test images and both outputs), as
    // ONNX's conformance tests are laid out (`dg onnx-test`, tools/onnxruntime/run-test.js).
    dg::export_onnx_test_folder(
        {pixels},
        {out.reconstruction.named("reconstruction"), out.segmentation.named("segmentation")},
        flags.out + "/onnx", {.graph_name = "unpool_autoencoder"});
  }

  const std::string picture = flags.out + "/reconstructions.png";
  write_picture(picture, model, test, norm);
  const Scores scores = evaluate(model, test, norm);
  const double mse = scores.mse;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fmt::print(
      "picture: {} (rows of test images, their reconstructions and garment masks), checkpoint: "
      "{}/model.safetensors, ONNX model: {}/onnx/model.onnx\n",
      picture, flags.out, flags.out);
  fmt::print(
      "segmentation: pixel accuracy {:.4f} (majority-class baseline {:.4f}), garment IoU {:.4f}, "
      "border "
      "pixels ignored\n",
      scores.pixel_accuracy, baseline_accuracy, scores.garment_iou);
  fmt::print("wall time {:.1f} s\n", seconds);
  if (mse < baseline_mse) {
    fmt::print("test MSE {:.5f} beats the mean-image baseline {:.5f} by {:.1f}x\n", mse,
               baseline_mse, baseline_mse / mse);
    return 0;
  }
  fmt::print(
      "test MSE {:.5f} does NOT beat the mean-image baseline {:.5f} (train longer: --epochs, "
      "--limit)\n",
      mse, baseline_mse);
  return 1;
} catch (const dg::Error& e) {
  fmt::print(stderr, "unpool_autoencoder: {}\n", e.what());
  return 1;
}
