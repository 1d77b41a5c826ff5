// The IDX reader on the real Fashion-MNIST files and on broken files made here; datasets,
// shuffling, batches, normalisation.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "deltagraph/deltagraph.h"
#include "test_util.h"
#include "train_util.h"

using dg::DType;
using dg::Tensor;
using dg::test::TempDir;
using dg::test::ThrowsError;
using dg::test::ThrowsExactly;

namespace {

std::string real(const std::string& name) { return dg::test::fashion_mnist_folder() + "/" + name; }

// An IDX header: magic 0x0000 08 nd, then the dims big-endian.
std::vector<unsigned char> idx_header(std::vector<uint32_t> dims, unsigned char type = 0x08) {
  std::vector<unsigned char> out{0, 0, type, static_cast<unsigned char>(dims.size())};
  for (uint32_t d : dims)
    for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<unsigned char>(d >> shift));
  return out;
}

std::vector<unsigned char> concat(std::vector<unsigned char> a,
                                  const std::vector<unsigned char>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Writes `bytes` gzip-compressed with zlib.
void write_gzip(const std::string& path, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb9");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// ---- the real files -------------------------------------------------------------------------

TEST(Idx, ReadsRealFashionMnistTestLabels) {
  DG_REQUIRE_FASHION_MNIST();
  Tensor labels = dg::load_idx_labels(real("t10k-labels-idx1-ubyte.gz"));
  ASSERT_EQ(labels.dtype(), DType::i64);
  ASSERT_EQ(labels.shape(), dg::Shape{10000});
  // The first test items: ankle boot, pullover, trouser, trouser, shirt.
  const int64_t* l = labels.data<int64_t>();
  EXPECT_EQ(std::vector<int64_t>(l, l + 5), (std::vector<int64_t>{9, 2, 1, 1, 6}));
  std::vector<int64_t> per_class(10);
  for (int64_t i = 0; i < 10000; ++i) ++per_class[l[i]];
  EXPECT_EQ(per_class, std::vector<int64_t>(10, 1000)) << "the test set is balanced";
}

TEST(Idx, ReadsRealFashionMnistTestImages) {
  DG_REQUIRE_FASHION_MNIST();
  Tensor images = dg::load_idx_images(real("t10k-images-idx3-ubyte.gz"));
  ASSERT_EQ(images.dtype(), DType::f32);
  ASSERT_EQ(images.shape(), (dg::Shape{10000, 1, 28, 28}));
  const float* p = images.data<float>();
  EXPECT_EQ(*std::min_element(p, p + images.numel()), 0.0f);
  EXPECT_EQ(*std::max_element(p, p + images.numel()), 1.0f);
  // The first image's bytes add up to 33456 (read independently with Python's gzip module).
  double first = 0;
  for (int i = 0; i < 784; ++i) first += p[i];
  EXPECT_NEAR(first * 255.0, 33456.0, 1e-2);
}

TEST(Idx, MaxItemsReadsOnlyThePrefix) {
  DG_REQUIRE_FASHION_MNIST();
  dg::Dataset train = dg::load_mnist(dg::test::fashion_mnist_folder(), "train", 500);
  EXPECT_EQ(train.size(), 500);
  EXPECT_EQ(train.images.shape(), (dg::Shape{500, 1, 28, 28}));
  const int64_t* l = train.labels.data<int64_t>();
  EXPECT_EQ(std::vector<int64_t>(l, l + 5), (std::vector<int64_t>{9, 0, 0, 3, 0}));
  dg::Dataset test = dg::load_mnist(dg::test::fashion_mnist_folder(), "t10k", 3);
  EXPECT_EQ(test.labels.to_vector(), (std::vector<double>{9, 2, 1}));
}

TEST(Idx, LoadMnistNamesTheMissingFiles) {
  TempDir dir;
  EXPECT_TRUE(ThrowsError([&] { dg::load_mnist(dir.path(), "train"); },
                          {"train-images-idx3-ubyte.gz nor", "dataset-fashion-mnist"}));
}

// ---- broken files -----------------------------------------------------------------------------

TEST(Idx, RejectsATruncatedGzipFile) {
  DG_REQUIRE_FASHION_MNIST();
  TempDir dir;
  std::vector<unsigned char> gz = dg::test::read_bytes(real("t10k-labels-idx1-ubyte.gz"));
  gz.resize(gz.size() / 2);
  const std::string path = dir.file("cut-labels.gz");
  dg::test::write_bytes(path, gz);
  EXPECT_TRUE(ThrowsError([&] { dg::load_idx_labels(path); },
                          {path, "truncated", "gzip stream ends abruptly"}));
}

TEST(Idx, RejectsATruncatedRawFileBeforeAllocating) {
  TempDir dir;
  const std::string path = dir.file("labels");
  dg::test::write_bytes(path, concat(idx_header({10}), {1, 2, 3, 4, 5}));
  EXPECT_TRUE(ThrowsExactly([&] { dg::load_idx_labels(path); },
                            path +
                                ": truncated: the header says dims [10] = 10 bytes of data after "
                                "the 8-byte header, but the file holds only 5 (file size 13)"));
  // Absurd dims (4e9 x 60000 x 60000) are rejected from the file size, without allocating.
  const std::string huge = dir.file("huge");
  dg::test::write_bytes(huge, concat(idx_header({4000000000u, 60000, 60000}), {0, 0, 0}));
  EXPECT_TRUE(ThrowsError([&] { dg::load_idx_images(huge); }, {"truncated", "file holds only 3"}));
}

TEST(Idx, RejectsAbsurdDimsInATinyGzipFile) {
  TempDir dir;
  const std::string path = dir.file("huge.gz");
  write_gzip(path, concat(idx_header({60000, 4096, 4096}), {1, 2, 3}));
  EXPECT_TRUE(ThrowsError([&] { dg::load_idx_images(path); },
                          {path, "[60000,4096,4096]", "more than a", "gzip file can hold"}));
}

TEST(Idx, RejectsACorruptGzipStream) {
  TempDir dir;
  std::vector<unsigned char> data = idx_header({1000});
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<unsigned char>(i * 7 % 10));
  const std::string good = dir.file("good.gz");
  write_gzip(good, data);
  EXPECT_EQ(dg::load_idx_labels(good).size(0), 1000);

  // A flipped bit in the CRC-32 of the gzip trailer (8 bytes from the end): every data byte
  // decodes, and zlib's integrity check catches it.
  std::vector<unsigned char> gz = dg::test::read_bytes(good);
  gz[gz.size() - 8] ^= 0x01;
  const std::string bad_crc = dir.file("bad-crc.gz");
  dg::test::write_bytes(bad_crc, gz);
  EXPECT_TRUE(ThrowsError([&] { dg::load_idx_labels(bad_crc); },
                          {bad_crc, "corrupt gzip stream", "incorrect data check"}));

  // The 8-byte trailer cut off: all data decodes, but the stream's integrity cannot be checked.
  gz = dg::test::read_bytes(good);
  gz.resize(gz.size() - 8);
  const std::string no_trailer = dir.file("no-trailer.gz");
  dg::test::write_bytes(no_trailer, gz);
  EXPECT_TRUE(
      ThrowsError([&] { dg::load_idx_labels(no_trailer); },
                  {"truncated: all 1000 bytes of data are there", "ends before its trailer"}));

  // Garbage in the middle of the deflate stream.
  gz = dg::test::read_bytes(good);
  for (size_t i = 12; i < gz.size() - 8; ++i) gz[i] = 0xff;
  const std::string garbage = dir.file("garbage.gz");
  dg::test::write_bytes(garbage, gz);
  EXPECT_TRUE(ThrowsError([&] { dg::load_idx_labels(garbage); }, {garbage, "corrupt gzip stream"}));
}

TEST(Idx, RejectsTheWrongKindOfFile) {
  TempDir dir;
  const std::string images = dir.file("images");
  dg::test::write_bytes(images, concat(idx_header({2, 2, 2}), std::vector<unsigned char>(8, 0)));
  EXPECT_TRUE(ThrowsExactly(
      [&] { dg::load_idx_labels(images); },
      images + ": magic number 0x00000803 says 3 dimensions (images), but labels expected 1 "
               "(magic number 0x00000801); is this the wrong file?"));
  const std::string labels = dir.file("labels");
  dg::test::write_bytes(labels, concat(idx_header({3}), {1, 2, 3}));
  EXPECT_TRUE(
      ThrowsError([&] { dg::load_idx_images(labels); },
                  {"magic number 0x00000801 says 1 dimension (labels), but images expected 3"}));

  const std::string png = dir.file("picture.png");
  dg::test::write_bytes(png, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'});
  EXPECT_TRUE(ThrowsError([&] { dg::load_idx_images(png); },
                          {"not an IDX file: magic number 0x89504e47 at offset 0"}));

  const std::string floats = dir.file("floats");
  dg::test::write_bytes(floats, concat(idx_header({1}, 0x0D), {0, 0, 0, 0}));
  EXPECT_TRUE(ThrowsError([&] { dg::read_idx(floats); },
                          {"element type 0x0d (float32)", "unsigned bytes (0x08)"}));

  const std::string empty = dir.file("empty");
  dg::test::write_bytes(empty, {});
  EXPECT_TRUE(ThrowsError([&] { dg::read_idx(empty); }, {"holds 0 bytes", "magic number"}));

  EXPECT_TRUE(ThrowsError([&] { dg::read_idx(dir.file("absent")); },
                          {"absent: cannot open it: No such file or directory"}));
}

TEST(Idx, RejectsTrailingBytesAndBadLabels) {
  TempDir dir;
  const std::string raw = dir.file("long");
  dg::test::write_bytes(raw, concat(idx_header({3}), {1, 2, 3, 4}));
  EXPECT_TRUE(ThrowsError([&] { dg::load_idx_labels(raw); }, {"1 unexpected bytes after the data",
                                                              "should be 11 bytes but it is 12"}));
  const std::string gz = dir.file("long.gz");
  write_gzip(gz, concat(idx_header({3}), {1, 2, 3, 4}));
  EXPECT_TRUE(
      ThrowsError([&] { dg::load_idx_labels(gz); },
                  {"unexpected bytes after the data", "offset 11 of the decompressed data"}));

  const std::string bad = dir.file("bad-labels");
  dg::test::write_bytes(bad, concat(idx_header({4}), {1, 2, 3, 12}));
  EXPECT_TRUE(ThrowsError([&] { dg::load_idx_labels(bad); },
                          {"label 12 of entry 3 (at offset 11) is outside [0, 10)"}));
  EXPECT_EQ(dg::load_idx_labels(bad, /*num_classes=*/0).to_vector(),
            (std::vector<double>{1, 2, 3, 12}));
}

TEST(Idx, ReadsRawAndGzipAlike) {
  TempDir dir;
  const std::vector<unsigned char> bytes =
      concat(idx_header({2, 2, 3}), {0, 51, 102, 153, 204, 255, 1, 2, 3, 4, 5, 6});
  dg::test::write_bytes(dir.file("raw"), bytes);
  write_gzip(dir.file("packed.gz"), bytes);
  Tensor a = dg::load_idx_images(dir.file("raw"));
  Tensor b = dg::load_idx_images(dir.file("packed.gz"));
  EXPECT_EQ(a.shape(), (dg::Shape{2, 1, 2, 3}));
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_FLOAT_EQ(a.data<float>()[1], 0.2f);
  dg::IdxArray partial = dg::read_idx(dir.file("packed.gz"), {.max_items = 1});
  EXPECT_EQ(partial.dims, (dg::Shape{1, 2, 3}));
  EXPECT_EQ(partial.data, (std::vector<uint8_t>{0, 51, 102, 153, 204, 255}));
}

// ---- shuffling, batches, normalisation -------------------------------------------------------

dg::Dataset counting_dataset(int64_t n) {
  Tensor images = Tensor::arange(n * 4, DType::f32).reshape({n, 1, 2, 2});
  Tensor labels = Tensor::arange(n, DType::i64);
  return {images, labels};
}

TEST(Shuffle, IsASeededPermutation) {
  std::vector<int64_t> a = dg::shuffled_indices(1000, 5);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(1000);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(sorted, identity);
  EXPECT_NE(a, identity);
  EXPECT_EQ(a, dg::shuffled_indices(1000, 5));
  EXPECT_NE(a, dg::shuffled_indices(1000, 6));
  // Pinned, so a change of algorithm (which would change every run's data order) is noticed.
  EXPECT_EQ(dg::shuffled_indices(8, 1), (std::vector<int64_t>{4, 6, 3, 5, 1, 7, 2, 0}));
}

TEST(Batches, CoverEveryEntryOncePerEpoch) {
  dg::Dataset data = counting_dataset(10);
  dg::Batches batches(data, {.batch_size = 4, .seed = 3, .epoch = 0});
  ASSERT_EQ(batches.size(), 3);
  std::multiset<int64_t> seen;
  std::vector<int64_t> sizes;
  for (const dg::Batch& b : batches) {
    sizes.push_back(b.labels.size(0));
    ASSERT_EQ(b.images.shape(), (dg::Shape{b.labels.size(0), 1, 2, 2}));
    for (int64_t i = 0; i < b.labels.size(0); ++i) {
      const int64_t label = b.labels.data<int64_t>()[i];
      seen.insert(label);
      // The image travels with its label.
      EXPECT_EQ(b.images.data<float>()[i * 4], static_cast<float>(label * 4));
    }
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2})) << "the last partial batch is kept";
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 10u);
}

TEST(Batches, DropLastAndOrderOptions) {
  dg::Dataset data = counting_dataset(10);
  EXPECT_EQ(dg::Batches(data, {.batch_size = 4, .drop_last = true}).size(), 2);
  EXPECT_EQ(dg::Batches(data, {.batch_size = 5, .drop_last = true}).size(), 2);
  dg::Batches in_order(data, {.batch_size = 3, .shuffle = false});
  EXPECT_EQ(in_order[3].labels.to_vector(), std::vector<double>{9});
  EXPECT_EQ(in_order.indices(1), (std::vector<int64_t>{3, 4, 5}));
  // Same (seed, epoch): same order, so a resumed run sees the same batches; another epoch
  // shuffles differently.
  dg::Batches e1(data, {.batch_size = 10, .seed = 1, .epoch = 1});
  EXPECT_EQ(e1.indices(0), dg::Batches(data, {.batch_size = 10, .seed = 1, .epoch = 1}).indices(0));
  EXPECT_NE(e1.indices(0), dg::Batches(data, {.batch_size = 10, .seed = 1, .epoch = 2}).indices(0));
  EXPECT_TRUE(ThrowsError([&] { in_order[4]; }, {"batch 4 is outside [0, 4)"}));
  EXPECT_TRUE(ThrowsError([&] { dg::Batches(data, {.batch_size = 0}); },
                          {"batch_size must be at least 1"}));
  dg::Dataset mismatched{data.images, Tensor::arange(9, DType::i64)};
  EXPECT_TRUE(ThrowsError([&] { dg::Batches b(mismatched); }, {"same number of entries"}));
}

// Data-parallel shards: each rank takes a contiguous part of every global batch; the parts are
// disjoint, together they are the batch one process sees, and every shard has as many batches
// (a last batch too small to give each shard a row is dropped).
TEST(Batches, ShardsSplitEachGlobalBatchIntoDisjointParts) {
  dg::Dataset data = counting_dataset(23);
  const dg::BatchOptions whole{.batch_size = 8, .seed = 5, .epoch = 2};
  const dg::Batches one(data, whole);
  for (int64_t shards : {2, 3}) {
    std::vector<dg::Batches> parts;
    for (int64_t shard = 0; shard < shards; ++shard) {
      dg::BatchOptions o = whole;
      o.shard = shard;
      o.shards = shards;
      parts.emplace_back(data, o);
    }
    // 23 = 8 + 8 + 7: the last batch has 7 rows, enough for 2 or 3 shards.
    for (const dg::Batches& p : parts) EXPECT_EQ(p.size(), 3);
    for (int64_t b = 0; b < 3; ++b) {
      std::vector<int64_t> joined;
      for (const dg::Batches& p : parts) {
        const std::vector<int64_t> rows = p.indices(b);
        EXPECT_GE(rows.size(), 2u);
        joined.insert(joined.end(), rows.begin(), rows.end());
      }
      EXPECT_EQ(joined, one.indices(b)) << shards << " shards, batch " << b;
    }
    // 8 rows over 3 shards: 2, 3 and 3 (floor(r*8/3) boundaries).
    if (shards == 3) {
      EXPECT_EQ(parts[0].indices(0).size(), 2u);
      EXPECT_EQ(parts[2].indices(0).size(), 3u);
    }
  }
  // 17 = 8 + 8 + 1: one row cannot be split over 2 shards, so that batch is dropped.
  EXPECT_EQ(dg::Batches(counting_dataset(17), {.batch_size = 8, .shard = 1, .shards = 2}).size(),
            2);
  EXPECT_TRUE(ThrowsError([&] { dg::Batches(data, {.batch_size = 8, .shard = 2, .shards = 2}); },
                          {"Batches: shard 2 of 2 does not exist"}));
  EXPECT_TRUE(ThrowsError([&] { dg::Batches(data, {.batch_size = 2, .shards = 3}); },
                          {"batch_size 2 is smaller than the 3 shards"}));
}

TEST(Dataset, SliceAndTakeRows) {
  dg::Dataset data = counting_dataset(6);
  dg::Dataset middle = data.slice(2, 3);
  EXPECT_EQ(middle.labels.to_vector(), (std::vector<double>{2, 3, 4}));
  EXPECT_EQ(middle.images.data<float>()[0], 8.0f);
  EXPECT_EQ(dg::take_rows(data.labels, {5, 0}).to_vector(), (std::vector<double>{5, 0}));
  EXPECT_TRUE(ThrowsError([&] { dg::take_rows(data.labels, {6}); }, {"index 6", "outside [0, 6)"}));
  EXPECT_TRUE(ThrowsError([&] { data.slice(4, 3); }, {"entries [4, 7) are outside"}));
}

TEST(Normalization, PerChannelMeanAndStd) {
  // Channel 0 holds 1 and 3 (mean 2, std 1); channel 1 holds 0 and 4 (mean 2, std 2).
  Tensor images = dg::test::f32({1, 0, 3, 4}, {2, 2, 1, 1});
  dg::Normalization n = dg::compute_normalization(images);
  EXPECT_EQ(n.mean, (std::vector<double>{2, 2}));
  EXPECT_EQ(n.std, (std::vector<double>{1, 2}));
  Tensor normalized = dg::normalize(images, n);
  EXPECT_EQ(normalized.dtype(), DType::f32);
  EXPECT_EQ(normalized.to_vector(), (std::vector<double>{-1, -1, 1, 1}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        dg::normalize(images, {{0}, {1}});
      },
      {"2 channels but the normalization has 1 means"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        dg::normalize(images, {{0, 0}, {1, 0}});
      },
      {"channel 1", "std must be > 0"}));
}

TEST(Normalization, RealFashionMnistStatistics) {
  DG_REQUIRE_FASHION_MNIST();
  dg::Dataset train = dg::load_mnist(dg::test::fashion_mnist_folder(), "train");
  dg::Normalization n = dg::compute_normalization(train.images);
  // The published statistics of the Fashion-MNIST training set.
  EXPECT_NEAR(n.mean[0], 0.2860, 5e-4);
  EXPECT_NEAR(n.std[0], 0.3530, 5e-4);
}

}  // namespace

// ---- augmentation -------------------------------------------------------------------------------

namespace {

// 40 distinct 1x5x6 images: image i's pixel (y, x) holds 1000 i + 10 y + x + 1 (never 0, so the
// zero padding is recognisable).
dg::Dataset numbered_images() {
  Tensor images({40, 1, 5, 6}, DType::f32);
  for (int64_t i = 0; i < images.numel(); ++i)
    images.data<float>()[i] = static_cast<float>(1000 * (i / 30) + 10 * (i % 30 / 6) + i % 6 + 1);
  Tensor labels({40}, DType::i64);
  for (int64_t i = 0; i < 40; ++i) labels.data<int64_t>()[i] = i % 10;
  return {images, labels};
}

// Each output pixel is either zero padding or the source image's pixel shifted by (dy, dx) and
// possibly mirrored; finds that transform or returns false.
bool is_shift_or_mirror(const Tensor& out, int64_t n, int64_t image, int64_t pad) {
  for (int mirror = 0; mirror < 2; ++mirror)
    for (int64_t dy = -pad; dy <= pad; ++dy)
      for (int64_t dx = -pad; dx <= pad; ++dx) {
        bool all = true;
        for (int64_t y = 0; y < 5 && all; ++y)
          for (int64_t x = 0; x < 6 && all; ++x) {
            const int64_t sy = y + dy, sx = (mirror ? 5 - x : x) + dx;
            const float expected = sy < 0 || sy >= 5 || sx < 0 || sx >= 6
                                       ? 0.f
                                       : static_cast<float>(1000 * image + 10 * sy + sx + 1);
            all = out.data<float>()[n * 30 + y * 6 + x] == expected;
          }
        if (all) return true;
      }
  return false;
}

}  // namespace

TEST(Augmentation, ShiftsAndMirrorsEachImageAndKeepsItsLabel) {
  const dg::Dataset data = numbered_images();
  const dg::Batches batches(data, {.batch_size = 8,
                                   .seed = 3,
                                   .epoch = 0,
                                   .augment = {.crop_padding = 2, .horizontal_flip = true}});
  int64_t changed = 0, mirrored_or_shifted = 0;
  for (const dg::Batch& batch : batches) {
    const std::vector<int64_t> rows = batches.indices(batch.index);
    for (size_t n = 0; n < rows.size(); ++n) {
      EXPECT_EQ(batch.labels.data<int64_t>()[n], rows[n] % 10);
      EXPECT_TRUE(is_shift_or_mirror(batch.images, static_cast<int64_t>(n), rows[n], 2))
          << "image " << rows[n];
      changed += !is_shift_or_mirror(batch.images, static_cast<int64_t>(n), rows[n], 0);
      ++mirrored_or_shifted;
    }
  }
  EXPECT_EQ(mirrored_or_shifted, 40);
  EXPECT_GT(changed, 30);  // 1 in 50 draws is the identity
}

// An epoch's augmented images depend on (seed, epoch, image) only: not on the batch size.
TEST(Augmentation, ReproduciblePerSeedAndEpochWhateverTheBatchSize) {
  const dg::Dataset data = numbered_images();
  auto epoch_images = [&](int64_t batch_size, uint64_t seed, int64_t epoch) {
    const dg::Batches batches(data, {.batch_size = batch_size,
                                     .shuffle = false,
                                     .seed = seed,
                                     .epoch = epoch,
                                     .augment = {.crop_padding = 1, .horizontal_flip = true}});
    std::vector<float> all;
    for (const dg::Batch& b : batches) {
      const auto v = b.images.values<float>();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  EXPECT_EQ(epoch_images(8, 1, 2), epoch_images(5, 1, 2));
  EXPECT_EQ(epoch_images(8, 1, 2), epoch_images(8, 1, 2));
  EXPECT_NE(epoch_images(8, 1, 2), epoch_images(8, 1, 3));
  EXPECT_NE(epoch_images(8, 1, 2), epoch_images(8, 2, 2));
  EXPECT_TRUE(ThrowsError(
      [] {
        (void)dg::augment_images(Tensor::zeros({2, 3}), {0, 1}, {.crop_padding = 1}, 0);
      },
      {"augment_images: images must be [N,C,H,W], got [2,3]"}));
}
