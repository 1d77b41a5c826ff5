// dg onnx-test: runs ONNX node-test folders (ONNX's own conformance tests: model.onnx with
// test_data_set_*/input_*.pb and output_*.pb) and prints one line per test and the totals.
//
//   dg onnx-test /usr/share/libonnx-testdata/data/node/test_conv_*
//   dg onnx-test --families /usr/share/libonnx-testdata/data/node  (every op deltagraph translates)
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "commands.h"
#include "deltagraph/deltagraph.h"

namespace dg::cli {

namespace {

constexpr const char* kUsage =
    "usage: dg onnx-test [--families] [--verbose] DIR...\n"
    "  DIR: a node-test folder (model.onnx, test_data_set_*), or a folder of them\n"
    "  --families: of a folder of tests, only those whose model is one node of an op deltagraph\n"
    "              translates (docs/onnx.md)";

namespace fs = std::filesystem;

}  // namespace

// A node test of an op family deltagraph has: its model is one node of a translated op type.
// (The "_expanded" variants spell an op out as its function body of other ops.)
bool in_translated_family(const fs::path& test) {
  static const std::vector<std::string> supported = onnx_supported_ops();
  const std::vector<std::string> ops = onnx_file_op_types((test / "model.onnx").string());
  return ops.size() == 1 &&
         std::find(supported.begin(), supported.end(), ops[0]) != supported.end();
}

int onnx_test_command(const std::vector<std::string>& args) {
  bool families = false, verbose = false;
  std::vector<std::string> dirs;
  for (const std::string& a : args) {
    if (a == "--families")
      families = true;
    else if (a == "--verbose" || a == "-v")
      verbose = true;
    else if (a == "-h" || a == "--help") {
      fmt::print("{}\n", kUsage);
      return 0;
    } else if (!a.empty() && a[0] == '-')
      fail("unknown option '{}'\n{}", a, kUsage);
    else
      dirs.push_back(a);
  }
  if (dirs.empty()) fail("no folder given\n{}", kUsage);
  std::vector<fs::path> tests;
  for (const std::string& d : dirs) {
    if (!fs::is_directory(d)) fail("'{}' is not a folder\n{}", d, kUsage);
    if (fs::exists(fs::path(d) / "model.onnx")) {
      tests.push_back(d);
      continue;
    }
    std::vector<fs::path> found;
    for (const auto& entry : fs::directory_iterator(d)) {
      if (!fs::exists(entry.path() / "model.onnx")) continue;
      if (families && !in_translated_family(entry.path())) continue;
      found.push_back(entry.path());
    }
    std::sort(found.begin(), found.end());
    tests.insert(tests.end(), found.begin(), found.end());
  }
  int passed = 0, failed = 0, unsupported = 0;
  for (const fs::path& t : tests) {
    const OnnxTestResult r = run_onnx_node_test(t.string());
    switch (r.status) {
      case OnnxTestResult::Status::pass:
        ++passed;
        fmt::print("pass         {}{}\n", r.name, verbose ? "  (" + r.detail + ")" : "");
        break;
      case OnnxTestResult::Status::fail:
        ++failed;
        fmt::print("FAIL         {}: {}\n", r.name, r.detail);
        break;
      case OnnxTestResult::Status::unsupported:
        ++unsupported;
        fmt::print("unsupported  {}: {}\n", r.name, r.detail);
        break;
    }
  }
  fmt::print("{} passed, {} failed, {} unsupported\n", passed, failed, unsupported);
  return failed == 0 ? 0 : 1;
}

}  // namespace dg::cli
