// ONNX's node tests (model.onnx + test_data_set_*/input_*.pb, output_*.pb), run and compared.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "deltagraph/core/tape.h"
#include "model.h"

namespace dg {

namespace {

namespace fs = std::filesystem;

constexpr double kRtol = 1e-3;
constexpr double kAtol = 1e-5;

std::vector<fs::path> numbered(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> out;
  for (int k = 0;; ++k) {
    fs::path p = dir / fmt::format("{}_{}.pb", prefix, k);
    if (!fs::exists(p)) break;
    out.push_back(p);
  }
  return out;
}

}  // namespace

OnnxTestResult run_onnx_node_test(const std::string& folder) {
  OnnxTestResult result;
  result.name = fs::path(folder).filename().string();
  if (result.name.empty()) result.name = fs::path(folder).parent_path().filename().string();
  using Status = OnnxTestResult::Status;
  try {
    const OnnxModel model = load_onnx((fs::path(folder) / "model.onnx").string());
    std::vector<fs::path> sets;
    for (const auto& entry : fs::directory_iterator(folder))
      if (entry.is_directory() && entry.path().filename().string().rfind("test_data_set_", 0) == 0)
        sets.push_back(entry.path());
    std::sort(sets.begin(), sets.end());
    if (sets.empty()) fail("no test_data_set_* folder in {}", folder);
    std::string worst_where;
    bool failed = false;
    for (const fs::path& set : sets) {
      std::vector<Var> inputs;
      for (const fs::path& p : numbered(set, "input"))
        inputs.push_back(input(load_onnx_tensor(p.string())));
      const std::vector<fs::path> expected_files = numbered(set, "output");
      if (inputs.size() != model.inputs.size())
        fail("{} holds {} inputs, the model takes {}", set.filename().string(), inputs.size(),
             model.inputs.size());
      NoGrad no_grad;
      const std::vector<Var> outputs = model(inputs);
      if (expected_files.size() > outputs.size())
        fail("{} holds {} outputs, the model gives {}", set.filename().string(),
             expected_files.size(), outputs.size());
      for (size_t k = 0; k < expected_files.size(); ++k) {
        const Tensor expected = load_onnx_tensor(expected_files[k].string());
        const Tensor& got = outputs[k].value();
        const std::string where = fmt::format("{}/output_{}", set.filename().string(), k);
        if (got.shape() != expected.shape()) {
          result.status = Status::fail;
          result.detail =
              fmt::format("{}: shape {} instead of {}", where, got.shape(), expected.shape());
          return result;
        }
        if (is_floating(got.dtype()) != is_floating(expected.dtype())) {
          result.status = Status::fail;
          result.detail = fmt::format("{}: {} instead of {}", where, dtype_name(got.dtype()),
                                      dtype_name(expected.dtype()));
          return result;
        }
        for (int64_t i = 0; i < got.numel(); ++i) {
          const double a = got.at(i), b = expected.at(i);
          const double err = std::isnan(a) != std::isnan(b) ? INFINITY
                             : std::isnan(a)                ? 0.0
                                                            : std::abs(a - b);
          const bool both_nan = std::isnan(a) && std::isnan(b);
          const bool bad = is_floating(expected.dtype())
                               ? !both_nan && !(err <= kAtol + kRtol * std::abs(b))
                               : a != b;
          result.worst_error = std::max(result.worst_error, err);
          // The message shows the first element out of tolerance.
          if (bad && !failed) worst_where = fmt::format("{}[{}]: {} instead of {}", where, i, a, b);
          failed = failed || bad;
        }
      }
    }
    result.status = failed ? Status::fail : Status::pass;
    result.detail = failed ? fmt::format("worst |error| {:.3g}; first out of tolerance: {}",
                                         result.worst_error, worst_where)
                           : fmt::format("worst |error| {:.3g}", result.worst_error);
  } catch (const OnnxUnsupported& e) {
    result.status = Status::unsupported;
    result.detail = e.what();
  } catch (const Error& e) {
    result.status = Status::fail;
    result.detail = e.what();
  }
  return result;
}

}  // namespace dg
