// safetensors files and model checkpoints: exact round trips, the reference implementation's
// byte layout, atomic writes, and rejection of broken or mismatched files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "deltagraph/deltagraph.h"
#include "test_util.h"
#include "train_util.h"

using dg::DType;
using dg::Tensor;
using dg::test::TempDir;
using dg::test::ThrowsError;
using Bytes = std::vector<unsigned char>;

namespace {

// A file made of the 8-byte little-endian length of `header`, `header` and `data`.
Bytes safetensors_bytes(const std::string& header, const Bytes& data) {
  Bytes out(8 + header.size() + data.size());
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(Safetensors, RoundTripIsBitExact) {
  TempDir dir;
  Tensor special = dg::test::f32({0.0f, -0.0f, std::numeric_limits<float>::quiet_NaN(),
                                  std::numeric_limits<float>::infinity(), 1e-45f, 3.4e38f},
                                 {2, 3});
  dg::TensorMap tensors{{"conv1.weight", Tensor::randn({4, 1, 3, 3}, 1)},
                        {"special", special},
                        {"f64", Tensor::randn({5}, 2, DType::f64)},
                        {"counts", Tensor::from(std::vector<int64_t>{-1, 0, INT64_MAX}, {3})},
                        {"scalar", Tensor::scalar(2.5, DType::f64)},
                        {"empty", Tensor::zeros({0, 3})}};
  const std::string path = dir.file("t.safetensors");
  dg::save_safetensors(path, tensors, {{"epoch", "3"}, {"note", "üñí \"quoted\""}});
  dg::SafetensorsContents back = dg::load_safetensors(path);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) EXPECT_TRUE(same_bits(back.tensors.at(name), t)) << name;
  EXPECT_EQ(back.metadata, (dg::Metadata{{"epoch", "3"}, {"note", "üñí \"quoted\""}}));
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"t.safetensors"}) << "no temporary file left";
}

TEST(Safetensors, WritesTheReferenceImplementationsBytes) {
  // The expected bytes are the safetensors reference implementation's own serialisation test
  // (test_serialization_forced_alignement): "attn0", F32 [1,1,2,3] holding 0..5. Python's
  // safetensors writes exactly these bytes for the same tensor.
  const Bytes expected{72,  0,   0,   0,   0,   0,   0,   0,   123, 34, 97, 116, 116, 110, 48,
                       34,  58,  123, 34,  100, 116, 121, 112, 101, 34, 58, 34,  70,  51,  50,
                       34,  44,  34,  115, 104, 97,  112, 101, 34,  58, 91, 49,  44,  49,  44,
                       50,  44,  51,  93,  44,  34,  100, 97,  116, 97, 95, 111, 102, 102, 115,
                       101, 116, 115, 34,  58,  91,  48,  44,  50,  52, 93, 125, 125, 32,  32,
                       32,  32,  32,  32,  32,  0,   0,   0,   0,   0,  0,  128, 63,  0,   0,
                       0,   64,  0,   0,   64,  64,  0,   0,   128, 64, 0,  0,   160, 64};
  TempDir dir;
  dg::save_safetensors(dir.file("attn.safetensors"),
                       {{"attn0", Tensor::arange(6).reshape({1, 1, 2, 3})}});
  EXPECT_EQ(dg::test::read_bytes(dir.file("attn.safetensors")), expected);
  // And with no tensors at all (the reference's test_empty): "{}" padded to 8.
  dg::save_safetensors(dir.file("empty.safetensors"), {});
  EXPECT_EQ(dg::test::read_bytes(dir.file("empty.safetensors")),
            (Bytes{8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32}));
}

TEST(Safetensors, ReadsFilesLaidOutAnyValidWay) {
  // Tensors in reverse offset order, fields in another order, whitespace padding.
  TempDir dir;
  const std::string header =
      R"({"b":{"data_offsets":[8,16],"shape":[2],"dtype":"F32"},"a":{"shape":[],"dtype":"I64","data_offsets":[0,8]}} )"
      "\t\n";
  Bytes data(16);
  const int64_t seven = 7;
  const float values[2] = {1.5f, -2.0f};
  std::memcpy(data.data(), &seven, 8);
  std::memcpy(data.data() + 8, values, 8);
  dg::test::write_bytes(dir.file("x"), safetensors_bytes(header, data));
  dg::SafetensorsContents c = dg::load_safetensors(dir.file("x"));
  EXPECT_EQ(c.tensors.at("a").item(), 7);
  EXPECT_EQ(c.tensors.at("a").shape(), dg::Shape{});
  EXPECT_EQ(c.tensors.at("b").to_vector(), (std::vector<double>{1.5, -2.0}));
}

// Writes a file with `header` and `data_size` zero bytes of data, and returns the load error.
::testing::AssertionResult rejects(const std::string& header, size_t data_size,
                                   std::initializer_list<std::string> parts) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  dg::test::write_bytes(path, safetensors_bytes(header, Bytes(data_size)));
  return ThrowsError([&] { dg::load_safetensors(path); }, parts);
}

TEST(Safetensors, RejectsBrokenFiles) {
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  EXPECT_TRUE(
      rejects(ok, 12, {"'w' has data_offsets [0, 16] beyond the end of the data (12 bytes"}));
  EXPECT_TRUE(rejects(ok, 20, {"cover 16 bytes of data but the file holds 20", "4 unexpected"}));
  EXPECT_TRUE(rejects(
      R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 12,
      {"tensor 'w'", "dtype F32 and shape [2,2] need 16 bytes but data_offsets [0, 12] span 12"}));
  EXPECT_TRUE(rejects(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      12, {"tensors 'a' (data_offsets [0, 8]) and 'b' ([4, 12]) overlap"}));
  EXPECT_TRUE(rejects(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8,
                      {"bytes [0, 4) of the data belong to no tensor"}));
  EXPECT_TRUE(rejects(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4,
                      {"dtype \"F16\" is not supported (deltagraph reads F32, F64 and I64)"}));
  EXPECT_TRUE(
      rejects(R"({"w":{"dtype":"F32","shape":[2,4611686018427387904],"data_offsets":[0,16]}})", 16,
              {"describes more than 2^63 bytes"}));
  EXPECT_TRUE(rejects(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8,
                      {"must hold non-negative integers"}));
  EXPECT_TRUE(rejects(R"({"w":{"dtype":"F32","shape":[2]}})", 8, {"\"data_offsets\" is missing"}));
  EXPECT_TRUE(rejects(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8,
                      {"end before they begin"}));
  EXPECT_TRUE(rejects(R"({"w":{"dtype":"F32",)", 8, {"not valid JSON"}));
  EXPECT_TRUE(rejects(R"([1, 2])", 0, {"must be a JSON object starting with '{'"}));
  EXPECT_TRUE(
      rejects(R"({"__metadata__":{"epoch":3}})", 0, {"value of \"epoch\" must be a string"}));
}

TEST(Safetensors, RejectsBadHeaderLengths) {
  TempDir dir;
  const std::string short_file = dir.file("short");
  dg::test::write_bytes(short_file, {1, 0, 0});
  EXPECT_TRUE(ThrowsError([&] { dg::load_safetensors(short_file); },
                          {short_file, "too short for a safetensors file: 3 bytes"}));
  // The header length says 4096 bytes, but the file has 8 + 10.
  Bytes bytes = safetensors_bytes("{}        ", {});
  bytes[0] = 0;
  bytes[1] = 16;
  const std::string beyond = dir.file("beyond");
  dg::test::write_bytes(beyond, bytes);
  EXPECT_TRUE(ThrowsError([&] { dg::load_safetensors(beyond); },
                          {"header length at offset 0 says 4096 bytes, beyond the end of the file "
                           "(file size 18, so at most 10)"}));
  EXPECT_TRUE(ThrowsError([&] { dg::load_safetensors(dir.file("none")); }, {"cannot open it"}));
}

TEST(Safetensors, RejectsATruncatedCheckpoint) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  dg::save_safetensors(path, {{"w", Tensor::randn({10, 10}, 1)}});
  Bytes bytes = dg::test::read_bytes(path);
  bytes.resize(bytes.size() - 100);
  dg::test::write_bytes(path, bytes);
  EXPECT_TRUE(ThrowsError([&] { dg::load_safetensors(path); },
                          {path, "beyond the end of the data", "truncated"}));
  bytes.resize(20);  // cut inside the header
  dg::test::write_bytes(path, bytes);
  EXPECT_TRUE(ThrowsError([&] { dg::load_safetensors(path); }, {"beyond the end of the file"}));
}

TEST(Safetensors, SaveReplacesAtomicallyAndReportsBadTargets) {
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  dg::save_safetensors(path, {{"w", Tensor::ones({100})}});
  dg::save_safetensors(path, {{"w", Tensor::zeros({3})}});
  EXPECT_EQ(dg::load_safetensors(path).tensors.at("w").to_vector(), (std::vector<double>{0, 0, 0}));
  // A failed save leaves the old file as it was and no temporary file behind.
  EXPECT_TRUE(ThrowsError(
      [&] {
        dg::save_safetensors(path, {{"__metadata__", Tensor::zeros({1})}});
      },
      {"reserved for metadata"}));
  EXPECT_EQ(dg::load_safetensors(path).tensors.at("w").numel(), 3);
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"m.safetensors"});
  EXPECT_TRUE(ThrowsError([&] { dg::save_safetensors(dir.file("no/such/folder/x"), {}); },
                          {"cannot create a temporary file in", "No such file or directory"}));
}

// ---- model checkpoints ------------------------------------------------------------------------

struct TinyModel {
  dg::ParamList params;
  dg::nn::Conv2d conv1;
  dg::nn::Linear fc;
  explicit TinyModel(uint64_t seed, int64_t kernel = 5)
      : params(seed), conv1(params, "conv1", 1, 32, kernel), fc(params, "fc", 8, 10) {}
};

TEST(Checkpoint, RoundTripRestoresWeightsInPlace) {
  TempDir dir;
  TinyModel a(1), b(2);
  const std::string path = dir.file("ckpt.safetensors");
  dg::save_checkpoint(path, a.params, nullptr,
                      {.epoch = 4, .step = 1200, .metadata = {{"run", "x"}}});
  const void* storage = b.conv1.weight.value().raw();
  dg::TrainingState state = dg::load_checkpoint(path, b.params);
  EXPECT_EQ(state.epoch, 4);
  EXPECT_EQ(state.step, 1200);
  EXPECT_EQ(state.metadata, (dg::Metadata{{"run", "x"}}));
  for (size_t i = 0; i < a.params.size(); ++i)
    EXPECT_TRUE(same_bits(a.params[i].param.value(), b.params[i].param.value()))
        << a.params[i].name;
  EXPECT_EQ(b.conv1.weight.value().raw(), storage) << "loaded in place";
  // Without an optimiser the file holds exactly the state_dict PyTorch expects.
  dg::SafetensorsContents file = dg::load_safetensors(path);
  EXPECT_EQ(file.tensors.size(), 4u);
  EXPECT_EQ(file.metadata.at("format"), "pt");
}

// Buffers travel with the weights, under PyTorch's state_dict names, and load in place.
TEST(Checkpoint, BuffersAreSavedAndLoaded) {
  TempDir dir;
  dg::ParamList a(1), b(2);
  dg::nn::BatchNorm2d bn_a(a, "bn1", 2, {.dtype = dg::DType::f64}),
      bn_b(b, "bn1", 2, {.dtype = dg::DType::f64});
  (void)bn_a(dg::input(dg::test::rand64({3, 2, 2, 2}, 1, 1, 5)));
  const std::string path = dir.file("bn.safetensors");
  dg::save_checkpoint(path, a);
  const dg::SafetensorsContents file = dg::load_safetensors(path);
  EXPECT_EQ(file.tensors.size(), 5u);
  EXPECT_EQ(file.tensors.at("bn1.num_batches_tracked").data<int64_t>()[0], 1);
  (void)dg::load_checkpoint(path, b);
  EXPECT_TRUE(same_bits(bn_a.running_mean, bn_b.running_mean));
  EXPECT_TRUE(same_bits(bn_a.running_var, bn_b.running_var));
  EXPECT_EQ(bn_b.num_batches_tracked.data<int64_t>()[0], 1);
  EXPECT_EQ(b.buffer("bn1.running_mean").raw(), bn_b.running_mean.raw()) << "loaded in place";
  // A checkpoint without the buffers is a mismatch like a missing weight.
  dg::TensorMap weights_only{{"bn1.weight", bn_a.weight.value()}, {"bn1.bias", bn_a.bias.value()}};
  dg::save_safetensors(dir.file("weights.safetensors"), weights_only,
                       {{"deltagraph.epoch", "0"}, {"deltagraph.step", "0"}});
  EXPECT_TRUE(ThrowsError([&] { (void)dg::load_checkpoint(dir.file("weights.safetensors"), b); },
                          {"3 problems", "missing 'bn1.running_mean' F64 [2]",
                           "missing 'bn1.num_batches_tracked' I64 []"}));
}

TEST(Checkpoint, MismatchesAreListedAndNothingIsChanged) {
  TempDir dir;
  TinyModel saved(1, /*kernel=*/3);
  const std::string path = dir.file("ckpt.safetensors");
  dg::save_checkpoint(path, saved.params);

  TinyModel model(2, /*kernel=*/5);
  const std::vector<double> before = model.fc.weight.value().to_vector();
  EXPECT_TRUE(
      ThrowsError([&] { dg::load_checkpoint(path, model.params); },
                  {"does not match the model (1 problem)",
                   "shape mismatch for 'conv1.weight': expected [32,1,5,5] got [32,1,3,3]"}));
  EXPECT_EQ(model.fc.weight.value().to_vector(), before) << "fc matched, but nothing may change";

  dg::ParamList other;
  dg::nn::Conv2d conv1(other, "conv1", 1, 32, 3);
  dg::nn::Linear head(other, "head", 8, 10);
  other.add("scale", Tensor::ones({1}, DType::f64));
  EXPECT_TRUE(ThrowsError([&] { dg::load_checkpoint(path, other); },
                          {"(5 problems)", "unexpected tensor 'fc.weight' F32 [10,8]",
                           "missing 'head.bias' F32 [10]", "missing 'scale' F64 [1]"}));

  dg::ParamList doubles;
  dg::nn::Conv2d c64(doubles, "conv1", 1, 32, 3, {.dtype = DType::f64});
  dg::nn::Linear f64(doubles, "fc", 8, 10, {.dtype = DType::f64});
  EXPECT_TRUE(ThrowsError([&] { dg::load_checkpoint(path, doubles); },
                          {"dtype mismatch for 'conv1.weight': expected F64 got F32"}));
}

TEST(Checkpoint, OptimizerStateAndProgressResume) {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  TinyModel a(1);
  dg::Adam adam(a.params, {.lr = 0.01});
  for (const auto& [name, p] : a.params) {
    dg::Param param = p;
    param.mutable_grad() = Tensor::ones(p.shape());
  }
  adam.step();
  adam.set_lr(0.0025);
  dg::save_checkpoint(path, a.params, &adam, {.epoch = 1, .step = 1});

  dg::SafetensorsContents file = dg::load_safetensors(path);
  EXPECT_TRUE(file.tensors.contains("optimizer/conv1.weight.exp_avg_sq"));
  EXPECT_EQ(file.metadata.at("deltagraph.optimizer"), "adam");

  TinyModel b(2);
  dg::Adam restored(b.params, {.lr = 0.01});
  dg::TrainingState state = dg::load_checkpoint(path, b.params, &restored);
  EXPECT_EQ(state.epoch, 1);
  EXPECT_DOUBLE_EQ(restored.lr(), 0.0025);
  const dg::TensorMap sa = adam.state(), sb = restored.state();
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [name, t] : sa) EXPECT_TRUE(same_bits(t, sb.at(name))) << name;

  dg::SGD sgd(b.params);
  EXPECT_TRUE(ThrowsError([&] { dg::load_checkpoint(path, b.params, &sgd); },
                          {"holds the state of a 'adam' optimiser, not of 'sgd'"}));
  dg::save_checkpoint(path, a.params);
  EXPECT_TRUE(ThrowsError([&] { dg::load_checkpoint(path, b.params, &restored); },
                          {"holds no optimiser state"}));
}

TEST(Checkpoint, RejectsReservedNamesAndBadMetadata) {
  TempDir dir;
  TinyModel m(1);
  EXPECT_TRUE(ThrowsError(
      [&] {
        dg::save_checkpoint(dir.file("c"), m.params, nullptr,
                            {.metadata = {{"deltagraph.epoch", "1"}}});
      },
      {"metadata key \"deltagraph.epoch\" is reserved"}));
  dg::TensorMap tensors;
  for (const auto& [name, p] : m.params) tensors[name] = p.value();
  dg::save_safetensors(dir.file("c"), tensors, {{"deltagraph.epoch", "three"}});
  EXPECT_TRUE(
      ThrowsError([&] { dg::load_checkpoint(dir.file("c"), m.params); },
                  {"metadata \"deltagraph.epoch\" must be a non-negative integer, got \"three\""}));
}

}  // namespace
