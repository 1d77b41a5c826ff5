// dg cases: runs reference-case files and prints one line per case, then "N passed, M failed".
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "commands.h"
#include "deltagraph/deltagraph.h"
#include "deltagraph/diagnostics/cases.h"

namespace dg::cli {

namespace {

namespace fs = std::filesystem;

// Wide enough for the longest reference-case names, so the columns line up.
constexpr int kNameWidth = 46;

// Messages can quote an op's multi-line error; each case must stay on one line.
std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

std::string statistics(const CaseResult& r) {
  if (r.compared_tensors == 0) return "nothing compared";
  if (r.worst_tensor.empty())
    return fmt::format("{} int64 tensor{}, exactly", r.compared_tensors,
                       r.compared_tensors == 1 ? "" : "s");
  return fmt::format("max abs {:.1e}  max rel {:.1e}  worst {} ({:.2g} of tolerance)",
                     r.worst_abs_error, r.worst_rel_error, r.worst_tensor,
                     r.worst_tolerance_fraction);
}

// The files a PATH stands for: itself, or every *.json file in the folder, sorted by name.
std::vector<std::string> expand(const std::string& path, std::string& problem) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return {path};
  std::vector<std::string> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
    std::error_code type_ec;
    if (entry.path().extension() == ".json" && entry.is_regular_file(type_ec))
      files.push_back(entry.path().string());
  }
  if (ec)
    problem = fmt::format("{}: cannot list the folder ({})", path, ec.message());
  else if (files.empty())
    problem = fmt::format("{}: the folder holds no *.json files", path);
  std::sort(files.begin(), files.end(), [](const std::string& a, const std::string& b) {
    return fs::path(a).filename() < fs::path(b).filename();
  });
  return files;
}

}  // namespace

int cases_command(const std::vector<std::string>& args) {
  if (args.empty())
    fail("usage: dg cases PATH... (a case file, or a folder: every *.json file in it)");
  int passed = 0, failed = 0;
  for (const std::string& path : args) {
    std::string problem;
    std::vector<std::string> files = expand(path, problem);
    if (!problem.empty()) {
      // A folder that yields no case is a failure: a mistyped path must not look like success.
      fmt::print("{:<{}} FAIL  {}\n", path, kNameWidth, problem);
      ++failed;
    }
    for (const std::string& file : files) {
      try {
        const CaseResult r = run_case(read_case(file));
        if (r.passed) {
          fmt::print("{:<{}} PASS  {}\n", r.name, kNameWidth, statistics(r));
          ++passed;
        } else {
          fmt::print("{:<{}} FAIL  {} | {}\n", r.name, kNameWidth, statistics(r),
                     one_line(r.message));
          ++failed;
        }
      } catch (const std::exception& e) {  // a malformed file: the error names it
        fmt::print("{:<{}} FAIL  {}\n", fs::path(file).filename().string(), kNameWidth,
                   one_line(e.what()));
        ++failed;
      }
      std::fflush(stdout);
    }
  }
  fmt::print("{} passed, {} failed\n", passed, failed);
  return failed ? 1 : 0;
}

}  // namespace dg::cli
