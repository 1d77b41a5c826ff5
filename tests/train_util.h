// Helpers shared by the training-piece tests: temporary folders, raw files, the real data.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace dg::test {

// A fresh folder under the test temp dir, removed with everything in it at the end of scope.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "dg_test_XXXXXX";
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }
  // Names of the files in the folder (to check no temporary file is left behind).
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path_))
      names.push_back(entry.path().filename().string());
    return names;
  }

 private:
  std::string path_;
};

inline std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// The real Fashion-MNIST folder (Debian's dataset-fashion-mnist; DG_FASHION_MNIST overrides).
inline std::string fashion_mnist_folder() {
  const char* custom = std::getenv("DG_FASHION_MNIST");
  return custom ? custom : "/usr/share/datasets/fashion-mnist";
}

// Fails the test (with what to do) when the real data is not installed.
#define DG_REQUIRE_FASHION_MNIST()                                                                \
  ASSERT_TRUE(                                                                                    \
      std::filesystem::exists(::dg::test::fashion_mnist_folder() + "/t10k-labels-idx1-ubyte.gz")) \
      << "Fashion-MNIST is missing from " << ::dg::test::fashion_mnist_folder()                   \
      << ": run tools/install-deps (apt-get install dataset-fashion-mnist) or set "               \
         "DG_FASHION_MNIST"

}  // namespace dg::test
