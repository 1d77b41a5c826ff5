// Documentation generated from the code must match the code: docs/ops.md is what the registry
// prints (`dg ops --markdown`), so an op's formula, attributes and defaults are written once.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "commands.h"

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(Docs, OpsPageIsWhatTheRegistryPrints) {
  std::ifstream file(DG_SOURCE_DIR "/docs/ops.md");
  ASSERT_TRUE(file) << "docs/ops.md is missing: build/bin/dg ops --markdown > docs/ops.md";
  std::stringstream committed;
  committed << file.rdbuf();
  const std::vector<std::string> have = lines_of(committed.str());
  const std::vector<std::string> want = lines_of(dg::cli::ops_markdown());
  for (size_t i = 0; i < std::max(have.size(), want.size()); ++i) {
    const std::string a = i < have.size() ? have[i] : "(end of file)";
    const std::string b = i < want.size() ? want[i] : "(end of output)";
    ASSERT_EQ(a, b) << "docs/ops.md differs from the registry at line " << i + 1
                    << "; regenerate it: build/bin/dg ops --markdown > docs/ops.md";
  }
}

}  // namespace
