// The README's C++ blocks, compiled into the test suite (extract.cpp generates their file).
#pragma once

#include <vector>

#include "deltagraph/deltagraph.h"

namespace readme_blocks {

enum class Mode { run, compile_only, namespace_scope };

struct Block {
  int number;  // 1-based, in reading order
  int line;    // the README line of the block's first code line
  Mode mode;
  void (*body)(const dg::Tensor& images, const dg::Tensor& labels);  // null at namespace scope
};

const std::vector<Block>& blocks();

}  // namespace readme_blocks
