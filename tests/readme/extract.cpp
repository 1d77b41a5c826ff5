// Writes every ```cpp block of a Markdown file (the README) into one C++ source file, so the
// test suite compiles and runs the documentation's code exactly as a reader sees it.
//
//   readme_extract README.md readme_blocks.cpp
//
// A block is, by its first line:
//   "// at namespace scope"  compiled at namespace scope (it defines functions, templates, ...)
//   "// compile only"        compiled as a function body that is never called (real data, long
//   runs) anything else            compiled as a function body and run by the test, with `images`
//                            (float32 [8,1,28,28]) and `labels` (int64 [8]) predefined
// `#include` lines are moved to the top of the file. `#line` directives make the compiler's
// messages point at the Markdown file's own lines.
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Block {
  int first_line = 0;  // 1-based line of the block's first code line in the Markdown file
  std::vector<std::string> lines;
};

const char* mode_of(const Block& b) {
  if (!b.lines.empty() && b.lines[0] == "// at namespace scope") return "namespace_scope";
  if (!b.lines.empty() && b.lines[0] == "// compile only") return "compile_only";
  return "run";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: readme_extract IN.md OUT.cpp\n";
    return 2;
  }
  const std::string markdown = argv[1];
  std::ifstream in(markdown);
  if (!in) {
    std::cerr << "readme_extract: cannot read " << markdown << "\n";
    return 1;
  }
  std::vector<Block> blocks;
  std::string line;
  bool inside = false;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!inside && line == "```cpp") {
      inside = true;
      blocks.push_back({number + 1, {}});
    } else if (inside && line.rfind("```", 0) == 0) {
      inside = false;
    } else if (inside) {
      blocks.back().lines.push_back(line);
    }
  }
  if (inside) {
    std::cerr << "readme_extract: " << markdown << ": a ```cpp block is never closed\n";
    return 1;
  }

  std::set<std::string> includes{"#include \"readme_blocks.h\""};
  for (Block& b : blocks)
    for (std::string& l : b.lines)
      if (l.rfind("#include", 0) == 0) {
        includes.insert(l);
        l.clear();  // keeps the line numbering
      }

  std::ostringstream out;
  out << "// Generated from " << markdown << " by tests/readme/extract.cpp; do not edit.\n";
  for (const std::string& inc : includes) out << inc << "\n";
  out << "\nnamespace readme_blocks {\n";
  for (size_t k = 0; k < blocks.size(); ++k) {
    const Block& b = blocks[k];
    const std::string mode = mode_of(b);
    if (mode == "namespace_scope")
      out << "namespace block_" << k + 1 << " {\n";
    else
      out << "void block_" << k + 1 << "([[maybe_unused]] const dg::Tensor& images, "
          << "[[maybe_unused]] const dg::Tensor& labels) {\n";
    out << "#line " << b.first_line << " \"" << markdown << "\"\n";
    for (const std::string& l : b.lines) out << l << "\n";
    out << "}\n";
  }
  out << "\nconst std::vector<Block>& blocks() {\n  static const std::vector<Block> all = {\n";
  for (size_t k = 0; k < blocks.size(); ++k) {
    const std::string mode = mode_of(blocks[k]);
    out << "      {" << k + 1 << ", " << blocks[k].first_line << ", Mode::" << mode << ", "
        << (mode == "namespace_scope" ? "nullptr" : "&block_" + std::to_string(k + 1)) << "},\n";
  }
  out << "  };\n  return all;\n}\n\n}  // namespace readme_blocks\n";

  std::ofstream file(argv[2]);
  file << out.str();
  if (!file) {
    std::cerr << "readme_extract: cannot write " << argv[2] << "\n";
    return 1;
  }
  return 0;
}
