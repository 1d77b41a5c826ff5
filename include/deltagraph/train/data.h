// deltagraph: data for training: datasets (MNIST-format files read by io/idx.h), seeded
// shuffling, mini-batches and normalisation.
//
//   dg::Dataset train = dg::load_mnist("/usr/share/datasets/fashion-mnist", "train");
//   dg::Normalization norm = dg::compute_normalization(train.images);   // mean 0.286, std 0.353
//   train.images = dg::normalize(train.images, norm);
//   for (int64_t epoch = 0; epoch < epochs; ++epoch)
//     for (const dg::Batch& b : dg::Batches(train, {.batch_size = 64, .seed = 1, .epoch = epoch}))
//       ... b.images [64,1,28,28] float32, b.labels [64] int64 ...
#pragma once

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "deltagraph/core/tensor.h"
#include "deltagraph/io/idx.h"

namespace dg {

// ---- datasets -------------------------------------------------------------------------------

// Images [N, C, H, W] (float) and labels [N] (int64), entry i of one belonging to entry i of
// the other.
struct Dataset {
  Tensor images;
  Tensor labels;

  int64_t size() const { return images.defined() ? images.size(0) : 0; }
  // Entries [start, start + count) (copied).
  Dataset slice(int64_t start, int64_t count) const;
};

// Loads "<folder>/<split>-images-idx3-ubyte(.gz)" and "<folder>/<split>-labels-idx1-ubyte(.gz)"
// (split "train" or "t10k", as MNIST and Fashion-MNIST name them), checking that both hold the
// same number of entries. max_items > 0 loads only the first max_items.
Dataset load_mnist(const std::string& folder, const std::string& split, int64_t max_items = -1);

// Rows `indices` of `t` along axis 0, in that order (a gather into a new tensor).
Tensor take_rows(const Tensor& t, const std::vector<int64_t>& indices);

// A permutation of 0..n-1 from `seed` (Fisher-Yates over mt19937_64, with unbiased bounded
// draws of our own, so the order is the same with every compiler and standard library).
std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed);

// ---- normalisation --------------------------------------------------------------------------

// Per-channel mean and standard deviation (population, over N, H and W).
struct Normalization {
  std::vector<double> mean;
  std::vector<double> std;
};
Normalization compute_normalization(const Tensor& images);
// (images - mean[c]) / std[c] per channel, as a new tensor of the same dtype.
Tensor normalize(const Tensor& images, const Normalization& normalization);

// ---- mini-batches ---------------------------------------------------------------------------

// Random changes to training images that keep their label: a shift by up to crop_padding pixels
// each way (a random crop of the image zero-padded by crop_padding on every side, as
// torchvision's RandomCrop(size, padding)) and a left-right mirror with probability 1/2.
struct Augmentation {
  int64_t crop_padding = 0;
  bool horizontal_flip = false;
  bool active() const { return crop_padding > 0 || horizontal_flip; }
};

// Augments images [N,C,H,W] (a new tensor). Image i's shift and mirror are drawn from
// (seed, keys[i]) alone: Batches passes the images' dataset positions and a seed mixed with the
// epoch, so an epoch's augmented images are the same whatever the batch size, thread count or
// resume point.
Tensor augment_images(const Tensor& images, const std::vector<int64_t>& keys,
                      const Augmentation& augmentation, uint64_t seed);

struct BatchOptions {
  int64_t batch_size = 64;
  bool shuffle = true;  // a new order every epoch, decided by (seed, epoch)
  uint64_t seed = 0;
  int64_t epoch =
      0;  // with shuffle: which epoch's order (resuming at epoch k gives epoch k's order)
  bool drop_last = false;     // drop a last batch smaller than batch_size
  Augmentation augment = {};  // random shifts and mirrors, decided by (seed, epoch, image)
  // Data-parallel training: batch_size is the global batch, and this process (rank `shard` of
  // `shards`) takes the contiguous part [floor(shard*B/shards), floor((shard+1)*B/shards)) of
  // each batch of B rows. The epoch's order and augmentation are those of one process, so the
  // shards of a batch together are exactly the batch one process would see. Every shard has the
  // same number of batches; a last batch with fewer rows than shards is dropped.
  int64_t shard = 0;
  int64_t shards = 1;
};

struct Batch {
  Tensor images;      // [B, C, H, W]
  Tensor labels;      // [B]
  int64_t index = 0;  // position of the batch in the epoch
};

// The mini-batches of one epoch of `dataset`: random access (a resumed run can start at any
// batch) and range-for. Each batch's tensors are gathered on access.
class Batches {
 public:
  Batches(const Dataset& dataset, BatchOptions options = {});

  // Number of batches in the epoch.
  int64_t size() const;
  Batch operator[](int64_t index) const;
  // The dataset positions batch `index` holds (this shard's part of it).
  std::vector<int64_t> indices(int64_t index) const;

  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Batch;
    using difference_type = std::ptrdiff_t;
    Iterator(const Batches* batches, int64_t index) : batches_(batches), index_(index) {}
    Batch operator*() const { return (*batches_)[index_]; }
    Iterator& operator++() {
      ++index_;
      return *this;
    }
    bool operator==(const Iterator& other) const { return index_ == other.index_; }

   private:
    const Batches* batches_;
    int64_t index_;
  };
  Iterator begin() const { return {this, 0}; }
  Iterator end() const { return {this, size()}; }

 private:
  Dataset dataset_;
  BatchOptions options_;
  std::vector<int64_t> order_;
};

}  // namespace dg
