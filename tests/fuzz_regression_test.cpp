// Inputs the fuzzers (tools/fuzz) found crashing a reader, kept as regression tests: each must
// now be rejected with a dg::Error that says what is wrong.
#include <gtest/gtest.h>

#include <filesystem>

#include "deltagraph/core/error.h"
#include "deltagraph/core/tape.h"
#include "deltagraph/onnx/onnx.h"
#include "deltagraph/ops/ops.h"
#include "deltagraph/train/checkpoint.h"

namespace {

const std::filesystem::path kFuzzData = std::filesystem::path(DG_TEST_DATA) / "fuzz";

// A header number too large for a double ("183E672") threw nlohmann's out_of_range out of
// load_safetensors, which terminated the process.
TEST(FuzzRegression, SafetensorsHeaderWithAnOverflowingNumberIsAnError) {
  const std::string path = (kFuzzData / "safetensors_number_overflow.safetensors").string();
  try {
    dg::load_safetensors(path);
    ADD_FAILURE() << "the file was accepted";
  } catch (const dg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not valid JSON"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("number overflow"), std::string::npos) << e.what();
  }
}

// Every committed crash input is rejected cleanly by the reader its name starts with.
TEST(FuzzRegression, EveryCommittedCrashInputIsRejectedWithAnError) {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kFuzzData)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("safetensors_", 0) != 0) continue;
    EXPECT_THROW(dg::load_safetensors(entry.path().string()), dg::Error) << name;
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

// An ONNX model whose Softmax runs over an axis of size 0 ([87,0,112], axis 1): the kernel read
// past the end of its input. Outputs with no elements are now never computed at all.
TEST(FuzzRegression, SoftmaxOverAnEmptyAxisGivesAnEmptyResult) {
  const dg::OnnxModel model = dg::load_onnx((kFuzzData / "onnx_softmax_empty_axis.onnx").string());
  dg::NoGrad no_grad;
  EXPECT_NO_THROW(model(model.example_inputs()));  // the mutated file declares no graph output
  for (const char* op : {"softmax", "log_softmax"})
    EXPECT_EQ(dg::call(op, {dg::Var(dg::Tensor::zeros({2, 0, 3}))})[0].shape(),
              (dg::Shape{2, 0, 3}));
}

// Every committed ONNX crash input now either runs or is a dg::Error, as the fuzz target does it.
TEST(FuzzRegression, EveryCommittedOnnxInputRunsOrIsAnError) {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kFuzzData)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("onnx_", 0) != 0) continue;
    try {
      const dg::OnnxModel model = dg::load_onnx(entry.path().string());
      dg::NoGrad no_grad;
      model(model.example_inputs());
    } catch (const dg::Error&) {
    }
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

}  // namespace
