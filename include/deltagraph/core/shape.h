// deltagraph: Shape, a small inline list of dimensions (no heap allocation).
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include <fmt/format.h>

#include "deltagraph/core/error.h"

namespace dg {

// A list of at most kMaxDims int64 values, stored inline. Used for tensor shapes and for
// integer-list attributes (strides, paddings, permutations, target shapes).
class Shape {
 public:
  static constexpr int kMaxDims = 8;

  Shape() = default;
  Shape(std::initializer_list<int64_t> values) { assign(values.begin(), values.end()); }
  explicit Shape(std::span<const int64_t> values) { assign(values.begin(), values.end()); }
  template <class It>
  Shape(It first, It last) {
    assign(first, last);
  }

  int size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int64_t* begin() { return values_; }
  int64_t* end() { return values_ + size_; }
  const int64_t* begin() const { return values_; }
  const int64_t* end() const { return values_ + size_; }
  const int64_t* data() const { return values_; }
  int64_t& operator[](int i) { return values_[i]; }
  int64_t operator[](int i) const { return values_[i]; }
  int64_t back() const { return values_[size_ - 1]; }

  void push_back(int64_t v) {
    if (size_ == kMaxDims) fail("Shape: more than {} entries", kMaxDims);
    values_[size_++] = v;
  }
  void resize(int n, int64_t fill = 0) {
    if (n < 0 || n > kMaxDims) fail("Shape: cannot hold {} entries (at most {})", n, kMaxDims);
    for (int i = size_; i < n; ++i) values_[i] = fill;
    size_ = n;
  }

  // Product of all entries (1 for an empty list).
  int64_t product() const {
    int64_t p = 1;
    for (int64_t v : *this) p *= v;
    return p;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  }

 private:
  template <class It>
  void assign(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }

  int64_t values_[kMaxDims] = {};
  int size_ = 0;
};

// "[2,3,4]"; "[]" for a scalar.
std::string to_string(const Shape& dims);
// The row-major multi-index of a flat position in `shape`, as "[1,0,2]" (error messages).
std::string multi_index(const Shape& shape, int64_t flat);

}  // namespace dg

template <>
struct fmt::formatter<dg::Shape> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const dg::Shape& dims, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(dg::to_string(dims), ctx);
  }
};
