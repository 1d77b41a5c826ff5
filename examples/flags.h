// Command-line flags for the examples: one reader, so every example checks its numbers the same
// way and a bad value is a dg::Error naming the flag ("--epochs expects an integer, got 'x'")
// instead of an uncaught std::invalid_argument.
#pragma once

#include <deltagraph/error.h>

#include <cstdint>
#include <string>

namespace examples {

class FlagReader {
 public:
  FlagReader(int argc, char** argv) : argc_(argc), argv_(argv) {}

  // Moves to the next flag; false when there is none left.
  bool next() {
    if (++index_ >= argc_) return false;
    flag_ = argv_[index_];
    return true;
  }
  const std::string& flag() const { return flag_; }

  // The argument after the current flag.
  std::string value() {
    if (index_ + 1 >= argc_) dg::fail("{} needs a value", flag_);
    return argv_[++index_];
  }
  int64_t integer() {
    const std::string v = value();
    try {
      size_t used = 0;
      const int64_t n = std::stoll(v, &used);
      if (used == v.size()) return n;
    } catch (const std::exception&) {
    }
    dg::fail("{} expects an integer, got '{}'", flag_, v);
  }
  double real() {
    const std::string v = value();
    try {
      size_t used = 0;
      const double x = std::stod(v, &used);
      if (used == v.size()) return x;
    } catch (const std::exception&) {
    }
    dg::fail("{} expects a number, got '{}'", flag_, v);
  }

 private:
  int argc_;
  char** argv_;
  int index_ = 0;
  std::string flag_;
};

}  // namespace examples
