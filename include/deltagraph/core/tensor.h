// deltagraph: Tensor, a dense row-major array of float32, float64 or int64.
//
// Storage is contiguous and reference-counted: copying a Tensor or reshaping it shares the
// buffer; clone() copies it. Tensors carry no autodiff state; Var (var.h) wraps them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "deltagraph/core/error.h"
#include "deltagraph/core/shape.h"

namespace dg {

enum class DType : uint8_t { f32, f64, i64 };

// "float32", "float64", "int64".
const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);
inline bool is_floating(DType dtype) { return dtype != DType::i64; }

template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::f32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::f64;
  else {
    static_assert(std::is_same_v<T, int64_t>, "deltagraph tensors hold float, double or int64_t");
    return DType::i64;
  }
}

class Tensor {
 public:
  // An undefined tensor (no storage); defined() is false.
  Tensor() = default;
  // Uninitialised storage of the given shape and dtype.
  Tensor(const Shape& shape, DType dtype);

  // Creation.
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor scalar(double value, DType dtype = DType::f32) { return full({}, value, dtype); }
  // Copies `values` (row-major) into a new tensor of `shape`; the sizes must agree.
  template <class T>
  static Tensor from(std::span<const T> values, const Shape& shape);
  template <class T>
  static Tensor from(const std::vector<T>& values, const Shape& shape) {
    return from(std::span<const T>(values), shape);
  }
  // 0, 1, ..., n-1 (times step, plus start).
  static Tensor arange(int64_t n, DType dtype = DType::f32, double start = 0, double step = 1);
  // Seeded and reproducible: the same seed gives the same values on every run.
  static Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::f32, double mean = 0,
                      double stddev = 1);
  static Tensor uniform(const Shape& shape, uint64_t seed, DType dtype = DType::f32, double low = 0,
                        double high = 1);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int dim() const { return shape_.size(); }
  // Size of axis `axis`; negative counts from the end.
  int64_t size(int axis) const;
  int64_t numel() const { return shape_.product(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  // Typed access; throws dg::Error if T does not match dtype().
  template <class T>
  T* data() {
    check_access(dtype_of<T>());
    return static_cast<T*>(storage_.get());
  }
  template <class T>
  const T* data() const {
    check_access(dtype_of<T>());
    return static_cast<const T*>(storage_.get());
  }
  template <class T>
  std::span<const T> values() const {
    return {data<T>(), static_cast<size_t>(numel())};
  }
  template <class T>
  std::span<T> values() {
    return {data<T>(), static_cast<size_t>(numel())};
  }
  void* raw() { return storage_.get(); }
  const void* raw() const { return storage_.get(); }

  // Element at a flat (row-major) position, converted to double.
  double at(int64_t flat_index) const;
  // The only element of a one-element tensor, as double.
  double item() const;
  // All elements converted to double (for tests and printing).
  std::vector<double> to_vector() const;

  // Same storage, new shape (one entry may be -1). Throws if the element count differs.
  Tensor reshape(const Shape& shape) const;
  // A new tensor with its own copy of the data.
  Tensor clone() const;
  // Converted copy (or this tensor itself if the dtype already matches).
  Tensor to(DType dtype) const;
  // Fills every element with `value`.
  void fill(double value);
  // True if both tensors share one buffer.
  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }
  // True if nobody else holds this tensor's buffer (it may be updated in place).
  bool unique() const { return storage_.use_count() == 1; }
  // Lets go of the data, keeping shape and dtype (defined() is false afterwards): a value that
  // a backward pass freed still describes itself.
  void free_data() { storage_.reset(); }

  // For int64 tensors of flat positions in [H, W] planes (max_pool2d's indices): the [H, W] of
  // the planes they index, so that max_unpool2d can put values back into a plane of that size
  // without being told. {0, 0} when unknown. Kept by copies of this handle, not by new tensors
  // (reshape, clone, conversions).
  void set_index_plane(int64_t h, int64_t w) {
    index_plane_h_ = h;
    index_plane_w_ = w;
  }
  std::pair<int64_t, int64_t> index_plane() const { return {index_plane_h_, index_plane_w_}; }

 private:
  void check_access(DType requested) const;

  std::shared_ptr<void> storage_;
  Shape shape_;
  DType dtype_ = DType::f32;
  int64_t index_plane_h_ = 0, index_plane_w_ = 0;
};

// Resolves one -1 in `target` against `numel` elements; throws (naming `who`) when impossible.
Shape infer_reshape(const Shape& target, int64_t numel, const char* who);

// Human-readable text: dtype, shape and values, long tensors elided ("...").
std::string to_string(const Tensor& tensor);

// Elementwise comparison of two tensors: same shape and |a-b| <= atol + rtol*|b| everywhere.
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

// Named tensors, ordered by name (optimiser state, checkpoint and safetensors contents).
using TensorMap = std::map<std::string, Tensor>;

// Bytes of tensor storage in this process, as allocated (rounded up, small buffers with their
// reference count): what tensors hold now, the most they held at once since the last
// reset_peak_memory() (or the start), and freed buffers kept for reuse (not counted as live).
struct MemoryStats {
  int64_t live_bytes = 0;
  int64_t peak_bytes = 0;
  int64_t cached_bytes = 0;
};
MemoryStats memory_stats();
// Starts a new peak from what is live now (before the step to measure).
void reset_peak_memory();

}  // namespace dg

template <>
struct fmt::formatter<dg::Tensor> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const dg::Tensor& t, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(dg::to_string(t), ctx);
  }
};
template <>
struct fmt::formatter<dg::DType> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(dg::DType d, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(dg::dtype_name(d), ctx);
  }
};
