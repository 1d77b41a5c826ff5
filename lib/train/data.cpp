// Datasets, seeded shuffling, normalisation and mini-batches.
#include "deltagraph/train/data.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>

#include "seed.h"

namespace dg {

// ---- datasets ---------------------------------------------------------------------------------

namespace {

void check_dataset(const Dataset& d, const char* who) {
  if (!d.images.defined() || !d.labels.defined())
    fail("{}: the dataset needs both images and labels", who);
  if (d.images.dim() < 1 || d.labels.dim() < 1 || d.images.size(0) != d.labels.size(0))
    fail("{}: images {} and labels {} must have the same number of entries (axis 0)", who,
         d.images.shape(), d.labels.shape());
}

// The first path that exists of `base` + ".gz" and `base`.
std::string existing_file(const std::string& base) {
  struct stat info {};
  for (const std::string& candidate : {base + ".gz", base})
    if (::stat(candidate.c_str(), &info) == 0) return candidate;
  fail("load_mnist: neither {}.gz nor {} exists (on Debian: apt-get install dataset-fashion-mnist)",
       base, base);
}

}  // namespace

Dataset Dataset::slice(int64_t start, int64_t count) const {
  check_dataset(*this, "Dataset::slice");
  if (start < 0 || count < 0 || start + count > size())
    fail("Dataset::slice: entries [{}, {}) are outside the dataset's {} entries", start,
         start + count, size());
  std::vector<int64_t> rows(static_cast<size_t>(count));
  std::iota(rows.begin(), rows.end(), start);
  return {take_rows(images, rows), take_rows(labels, rows)};
}

Dataset load_mnist(const std::string& folder, const std::string& split, int64_t max_items) {
  const std::string images = existing_file(folder + "/" + split + "-images-idx3-ubyte");
  const std::string labels = existing_file(folder + "/" + split + "-labels-idx1-ubyte");
  Dataset d{load_idx_images(images, max_items), load_idx_labels(labels, 10, max_items)};
  if (d.images.size(0) != d.labels.size(0))
    fail("load_mnist: {} holds {} images but {} holds {} labels", images, d.images.size(0), labels,
         d.labels.size(0));
  return d;
}

Tensor take_rows(const Tensor& t, const std::vector<int64_t>& indices) {
  if (!t.defined() || t.dim() < 1) fail("take_rows: needs a tensor with at least one axis");
  const int64_t rows = t.size(0);
  Shape shape = t.shape();
  shape[0] = static_cast<int64_t>(indices.size());
  Tensor out(shape, t.dtype());
  const size_t row_bytes = rows ? t.nbytes() / static_cast<size_t>(rows) : 0;
  const auto* src = static_cast<const unsigned char*>(t.raw());
  auto* dst = static_cast<unsigned char*>(out.raw());
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= rows)
      fail("take_rows: index {} (position {}) is outside [0, {})", indices[i], i, rows);
    std::memcpy(dst + i * row_bytes, src + static_cast<size_t>(indices[i]) * row_bytes, row_bytes);
  }
  return out;
}

std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed) {
  if (n < 0) fail("shuffled_indices: n must be >= 0, got {}", n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    // A uniform draw from [0, i] without modulo bias: reject the top 2^64 mod (i+1) values.
    const uint64_t bound = static_cast<uint64_t>(i) + 1;
    const uint64_t threshold = (0 - bound) % bound;
    uint64_t x;
    do x = rng();
    while (x < threshold);
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(x % bound)]);
  }
  return order;
}

// ---- normalisation ------------------------------------------------------------------------------

namespace {

void check_images(const Tensor& images, const char* who) {
  if (!images.defined() || images.dim() < 2 || !is_floating(images.dtype()))
    fail("{}: images must be a float tensor [N, C, ...], got {}", who,
         images.defined() ? fmt::format("{} {}", dtype_name(images.dtype()), images.shape())
                          : std::string("an undefined tensor"));
}

template <class F>
void for_each_channel(const Tensor& images, F&& f) {
  const int64_t n = images.size(0), channels = images.size(1);
  const int64_t plane = channels && n ? images.numel() / (n * channels) : 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < channels; ++c) f(c, (i * channels + c) * plane, plane);
}

}  // namespace

Normalization compute_normalization(const Tensor& images) {
  check_images(images, "compute_normalization");
  const int64_t channels = images.size(1);
  if (images.numel() == 0) fail("compute_normalization: the images are empty ({})", images.shape());
  std::vector<double> sum(channels), sum_sq(channels);
  // Read in place, summed in double: a float64 copy of a data set would double the peak memory
  // of a training run (376 MB for Fashion-MNIST's training images).
  auto accumulate = [&](const auto* p) {
    for_each_channel(images, [&](int64_t c, int64_t start, int64_t count) {
      for (int64_t k = 0; k < count; ++k) {
        const auto v = static_cast<double>(p[start + k]);
        sum[c] += v;
        sum_sq[c] += v * v;
      }
    });
  };
  if (images.dtype() == DType::f64)
    accumulate(images.data<double>());
  else
    accumulate(images.data<float>());
  const double per_channel = static_cast<double>(images.numel() / channels);
  Normalization out;
  for (int64_t c = 0; c < channels; ++c) {
    const double mean = sum[c] / per_channel;
    out.mean.push_back(mean);
    out.std.push_back(std::sqrt(std::max(0.0, sum_sq[c] / per_channel - mean * mean)));
  }
  return out;
}

Tensor normalize(const Tensor& images, const Normalization& norm) {
  check_images(images, "normalize");
  const int64_t channels = images.size(1);
  if (static_cast<int64_t>(norm.mean.size()) != channels ||
      static_cast<int64_t>(norm.std.size()) != channels)
    fail("normalize: the images have {} channels but the normalization has {} means and {} stds",
         channels, norm.mean.size(), norm.std.size());
  for (int64_t c = 0; c < channels; ++c)
    if (!(norm.std[c] > 0) || !std::isfinite(norm.mean[c]))
      fail(
          "normalize: channel {} has mean {} and std {}; the std must be > 0 (a constant channel "
          "cannot be normalised)",
          c, norm.mean[c], norm.std[c]);
  Tensor out = images.clone();
  auto apply = [&](auto zero) {
    using T = decltype(zero);
    T* p = out.data<T>();
    for_each_channel(images, [&](int64_t c, int64_t start, int64_t count) {
      const T mean = static_cast<T>(norm.mean[c]), inv_std = static_cast<T>(1 / norm.std[c]);
      for (int64_t k = 0; k < count; ++k) p[start + k] = (p[start + k] - mean) * inv_std;
    });
  };
  if (images.dtype() == DType::f32)
    apply(float{});
  else
    apply(double{});
  return out;
}

// ---- mini-batches -------------------------------------------------------------------------------

Batches::Batches(const Dataset& dataset, BatchOptions options)
    : dataset_(dataset), options_(options) {
  check_dataset(dataset_, "Batches");
  if (options.batch_size < 1)
    fail("Batches: batch_size must be at least 1, got {}", options.batch_size);
  if (options.epoch < 0) fail("Batches: epoch must be >= 0, got {}", options.epoch);
  if (options.shards < 1 || options.shard < 0 || options.shard >= options.shards)
    fail("Batches: shard {} of {} does not exist (shard must be in [0, shards), shards >= 1)",
         options.shard, options.shards);
  if (options.batch_size < options.shards)
    fail("Batches: batch_size {} is smaller than the {} shards it is split over",
         options.batch_size, options.shards);
  const int64_t n = dataset_.size();
  if (options.shuffle) {
    // Each epoch's order depends only on (seed, epoch), so a resumed run sees the same batches.
    const uint64_t seed =
        detail::mix_seed(options.seed ^ detail::mix_seed(static_cast<uint64_t>(options.epoch)));
    order_ = shuffled_indices(n, seed);
  } else {
    order_.resize(static_cast<size_t>(n));
    std::iota(order_.begin(), order_.end(), 0);
  }
}

int64_t Batches::size() const {
  const int64_t n = dataset_.size(), b = options_.batch_size;
  // A last partial batch too small to give every shard a row is dropped.
  const bool keep_last = !options_.drop_last && n % b >= options_.shards;
  return n / b + (keep_last ? 1 : 0);
}

std::vector<int64_t> Batches::indices(int64_t index) const {
  if (index < 0 || index >= size())
    fail("Batches: batch {} is outside [0, {}) ({} entries, batch size {}{})", index, size(),
         dataset_.size(), options_.batch_size,
         options_.drop_last ? ", last partial batch dropped" : "");
  const int64_t start = index * options_.batch_size;
  const int64_t rows = std::min(start + options_.batch_size, dataset_.size()) - start;
  const int64_t first = start + options_.shard * rows / options_.shards;
  const int64_t last = start + (options_.shard + 1) * rows / options_.shards;
  return {order_.begin() + first, order_.begin() + last};
}

Batch Batches::operator[](int64_t index) const {
  const std::vector<int64_t> rows = indices(index);
  Tensor images = take_rows(dataset_.images, rows);
  if (options_.augment.active()) {
    const uint64_t seed = detail::mix_seed(
        options_.seed ^ detail::mix_seed(0x61756780ULL + static_cast<uint64_t>(options_.epoch)));
    images = augment_images(images, rows, options_.augment, seed);
  }
  return {images, take_rows(dataset_.labels, rows), index};
}

Tensor augment_images(const Tensor& images, const std::vector<int64_t>& keys, const Augmentation& a,
                      uint64_t seed) {
  if (!images.defined() || images.dim() != 4)
    fail("augment_images: images must be [N,C,H,W], got {}",
         images.defined() ? to_string(images.shape()) : "an undefined tensor");
  if (static_cast<int64_t>(keys.size()) != images.size(0))
    fail("augment_images: {} keys for {} images", keys.size(), images.size(0));
  if (a.crop_padding < 0) fail("augment_images: crop_padding must be >= 0, got {}", a.crop_padding);
  const int64_t N = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  Tensor out = Tensor::zeros(images.shape(), images.dtype());
  const auto* src = static_cast<const unsigned char*>(images.raw());
  auto* dst = static_cast<unsigned char*>(out.raw());
  const size_t element =
      images.nbytes() / static_cast<size_t>(std::max<int64_t>(images.numel(), 1));
  for (int64_t n = 0; n < N; ++n) {
    // Three independent draws per image from one hash chain.
    uint64_t state = detail::mix_seed(seed ^ detail::mix_seed(static_cast<uint64_t>(keys[n])));
    auto draw = [&](uint64_t bound) {
      state = detail::mix_seed(state + 0x9e3779b97f4a7c15ULL);
      return static_cast<int64_t>(state % bound);  // bound <= 2*pad+1: the bias is negligible
    };
    const uint64_t span = static_cast<uint64_t>(2 * a.crop_padding + 1);
    const int64_t dy = draw(span) - a.crop_padding, dx = draw(span) - a.crop_padding;
    const bool mirror = a.horizontal_flip && draw(2) == 1;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y) {
        const int64_t sy = y + dy;
        if (sy < 0 || sy >= H) continue;  // zero padding
        for (int64_t x = 0; x < W; ++x) {
          const int64_t sx = (mirror ? W - 1 - x : x) + dx;
          if (sx < 0 || sx >= W) continue;
          std::memcpy(dst + (((n * C + c) * H + y) * W + x) * element,
                      src + (((n * C + c) * H + sy) * W + sx) * element, element);
        }
      }
  }
  return out;
}

}  // namespace dg
