// Command-line flags for the examples: one reader, so every example checks its numbers the same
// way and a bad value is a dg::Error naming the flag ("--epochs expects an integer, got 'x'")
// instead of an uncaught std::invalid_argument.
#pragma once

#include <deltagraph/core/error.h>

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
    return parsed<int64_t>("an integer",
                           [](const std::string& v, size_t* used) { return std::stoll(v, used); });
  }
  double real() {
    return parsed<double>("a number",
                          [](const std::string& v, size_t* used) { return std::stod(v, used); });
  }

 private:
  // The next argument read by `parse` (std::stoll, std::stod), which must take all of it.
  template <class T, class Parse>
  T parsed(const char* what, Parse parse) {
    const std::string v = value();
    try {
      size_t used = 0;
      const T x = parse(v, &used);
      if (used == v.size()) return x;
    } catch (const std::exception&) {
    }
    dg::fail("{} expects {}, got '{}'", flag_, what, v);
  }

  int argc_;
  char** argv_;
  int index_ = 0;
  std::string flag_;
};

// The flags every training example takes. Each example derives its Flags from this and sets
// its own defaults in its constructor.
struct TrainingFlags {
  int64_t epochs = 1;
  int64_t batch_size = 64;
  double lr = 1e-3;
  uint64_t seed = 1;
  int threads = 0;  // 0: all cores
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string out;
  int64_t limit = -1;       // train on the first N training images (-1: all)
  int64_t test_limit = -1;  // use the first N test images (-1: all)

  // Reads the reader's current flag if it is one of these; false leaves it to the caller.
  bool read(FlagReader& r) {
    const std::string& a = r.flag();
    if (a == "--epochs")
      epochs = r.integer();
    else if (a == "--batch-size")
      batch_size = r.integer();
    else if (a == "--lr")
      lr = r.real();
    else if (a == "--seed")
      seed = static_cast<uint64_t>(r.integer());
    else if (a == "--threads")
      threads = static_cast<int>(r.integer());
    else if (a == "--data")
      data = r.value();
    else if (a == "--out")
      out = r.value();
    else if (a == "--limit")
      limit = r.integer();
    else if (a == "--test-limit")
      test_limit = r.integer();
    else
      return false;
    return true;
  }

  // Fails with a dg::Error naming the flag when a value makes no sense.
  void check() const {
    if (epochs < 1 || batch_size < 1) dg::fail("--epochs and --batch-size must be at least 1");
    for (const int64_t n : {limit, test_limit})
      if (n == 0 || n < -1)
        dg::fail("--limit and --test-limit take a positive number of images, or -1 for all");
    if (!(lr > 0)) dg::fail("--lr must be positive, got {}", lr);
  }
};

}  // namespace examples
