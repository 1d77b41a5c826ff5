// The README's code, compiled and run as the reader sees it: every ```cpp block of README.md
// (tests/readme/extract.cpp turns them into one source file at build time), so the front door
// cannot drift from the library.
#include <gtest/gtest.h>

#include <filesystem>

#include "readme_blocks.h"

namespace {

TEST(Readme, EveryCppBlockCompilesAndRuns) {
  const auto& blocks = readme_blocks::blocks();
  ASSERT_FALSE(blocks.empty()) << "README.md has no ```cpp block: nothing was checked";
  const dg::Tensor images = dg::Tensor::uniform({8, 1, 28, 28}, 1);
  const dg::Tensor labels = dg::Tensor::from(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}, {8});
  // Blocks may write files (graphs, checkpoints): in a folder of their own.
  const std::filesystem::path here = std::filesystem::current_path();
  const std::filesystem::path scratch =
      std::filesystem::temp_directory_path() / ("dg_readme_" + std::to_string(::getpid()));
  std::filesystem::create_directories(scratch);
  std::filesystem::current_path(scratch);
  int ran = 0;
  for (const readme_blocks::Block& b : blocks) {
    if (b.mode != readme_blocks::Mode::run) continue;
    SCOPED_TRACE("README.md block " + std::to_string(b.number) + " (line " +
                 std::to_string(b.line) + ")");
    try {
      b.body(images, labels);
      ++ran;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "threw: " << e.what();
    }
  }
  std::filesystem::current_path(here);
  std::filesystem::remove_all(scratch);
  EXPECT_GT(ran, 0) << "no README block was run (all are compile-only or at namespace scope)";
}

}  // namespace
