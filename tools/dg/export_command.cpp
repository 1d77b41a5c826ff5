// dg export: re-exports an ONNX model through deltagraph, optionally with the weights of a
// deltagraph checkpoint (a fine-tuned model), and writes a test folder in the layout of ONNX's
// conformance tests (model.onnx, test_data_set_0/input_*.pb and output_*.pb) holding deltagraph's
// outputs for seeded random inputs, which `dg onnx-test` and tools/onnxruntime/run-test.js check.
//
//   dg export MODEL.onnx -o OUT.onnx [--weights CHECKPOINT.safetensors] [--opset N]
//             [--test-data DIR] [--batch N] [--seed S]
#include <string>
#include <vector>

#include <fmt/core.h>

#include "commands.h"
#include "deltagraph/deltagraph.h"

namespace dg::cli {

namespace {

constexpr const char* kUsage =
    "usage: dg export MODEL.onnx -o OUT.onnx [--weights CHECKPOINT.safetensors] [--opset N]\n"
    "                 [--test-data DIR] [--batch N] [--seed S]\n"
    "  imports MODEL.onnx, runs it once (free input sizes: --batch, default 2) and exports what "
    "it\n"
    "  recorded; --weights loads a checkpoint's parameters and buffers (by name) first;\n"
    "  --test-data DIR writes DIR/model.onnx and DIR/test_data_set_0 with deltagraph's outputs\n"
    "  for random normal inputs (--seed, default 1)";

}  // namespace

int export_command(const std::vector<std::string>& args) {
  std::string model_path, out_path, weights, test_dir;
  OnnxExportOptions options;
  int64_t batch = 2;
  uint64_t seed = 1;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) fail("{} needs a value\n{}", a, kUsage);
      return args[++i];
    };
    if (a == "-o" || a == "--output")
      out_path = value();
    else if (a == "--weights")
      weights = value();
    else if (a == "--test-data")
      test_dir = value();
    else if (a == "--opset")
      options.opset = std::stoll(value());
    else if (a == "--batch")
      batch = std::stoll(value());
    else if (a == "--seed")
      seed = std::stoull(value());
    else if (a == "-h" || a == "--help") {
      fmt::print("{}\n", kUsage);
      return 0;
    } else if (!a.empty() && a[0] == '-')
      fail("unknown option '{}'\n{}", a, kUsage);
    else if (model_path.empty())
      model_path = a;
    else
      fail("one model at a time\n{}", kUsage);
  }
  if (model_path.empty() || (out_path.empty() && test_dir.empty()))
    fail("a model and -o OUT.onnx (or --test-data DIR) are needed\n{}", kUsage);
  if (batch < 1) fail("--batch must be at least 1\n{}", kUsage);

  OnnxModel model = load_onnx(model_path);
  if (!weights.empty()) load_checkpoint(weights, model.params);
  Tape tape;
  std::vector<Var> inputs;
  uint64_t k = 0;
  for (const Var& zero : model.example_inputs(batch)) {
    const Tensor& t = zero.value();
    // Float inputs as variables: every op on them is recorded, so none is folded into a constant.
    inputs.push_back(is_floating(t.dtype())
                         ? variable(Tensor::randn(t.shape(), seed + k++, t.dtype()), zero.name())
                         : input(t, zero.name()));
  }
  const std::vector<Var> outputs = model(inputs);
  const std::string bytes = export_onnx_bytes(outputs, options);
  auto write = [&](const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())
      fail("cannot write '{}'", path);
    std::fclose(f);
  };
  if (!out_path.empty()) {
    write(out_path);
    fmt::print("{}: exported to {} ({} bytes, opset {})\n", model_path, out_path, bytes.size(),
               options.opset);
  }
  if (!test_dir.empty()) {
    export_onnx_test_folder(inputs, outputs, test_dir, options);
    fmt::print("{}: test folder written to {} ({} inputs, {} outputs)\n", model_path, test_dir,
               inputs.size(), outputs.size());
  }
  return 0;
}

}  // namespace dg::cli
