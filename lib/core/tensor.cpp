// Tensor storage, creation, conversion and printing.
#include "deltagraph/core/tensor.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <unordered_map>

namespace dg {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "float32";
    case DType::f64:
      return "float64";
    case DType::i64:
      return "int64";
  }
  return "?";
}

size_t dtype_size(DType dtype) { return dtype == DType::f32 ? 4 : 8; }

std::string to_string(const Shape& dims) {
  std::string s = "[";
  for (int i = 0; i < dims.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

std::string multi_index(const Shape& shape, int64_t flat) {
  Shape index;
  index.resize(shape.size());
  for (int d = shape.size() - 1; d >= 0; --d) {
    index[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return to_string(index);
}

namespace {

// Live and peak bytes of tensor storage (memory_stats). Relaxed: counters, not synchronisation.
std::atomic<int64_t> live_storage{0}, peak_storage{0};

void note_allocated(size_t bytes) {
  const int64_t live =
      live_storage.fetch_add(static_cast<int64_t>(bytes), std::memory_order_relaxed) +
      static_cast<int64_t>(bytes);
  int64_t peak = peak_storage.load(std::memory_order_relaxed);
  while (live > peak &&
         !peak_storage.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

void note_freed(size_t bytes) {
  live_storage.fetch_sub(static_cast<int64_t>(bytes), std::memory_order_relaxed);
}

// std::allocator that counts: small buffers share one allocation with their reference count
// (allocate_shared), and this sees both the allocation and, when the last reference goes, its
// release.
template <class T>
struct CountingAllocator {
  using value_type = T;
  CountingAllocator() = default;
  template <class U>
  CountingAllocator(const CountingAllocator<U>&) {}  // NOLINT: rebinding
  T* allocate(size_t n) {
    T* p = std::allocator<T>().allocate(n);
    note_allocated(n * sizeof(T));
    return p;
  }
  void deallocate(T* p, size_t n) {
    note_freed(n * sizeof(T));
    std::allocator<T>().deallocate(p, n);
  }
  template <class U>
  bool operator==(const CountingAllocator<U>&) const {
    return true;
  }
};

// Freed large buffers, kept for reuse. A training loop allocates the same activation and
// gradient sizes every step; without reuse each one is a fresh mmap whose pages the kernel must
// fault in and zero again (measured: ~12% of a Fashion-MNIST step). Small buffers stay with malloc.
// The cache is bounded, and a full cache makes room for the newest buffer by freeing buffers of
// other sizes: sizes that stop recurring (an epoch's short last batch, evaluation chunks) do not
// pin memory, which would otherwise count in the peak RSS next to the live tensors.
class BufferCache {
 public:
  static constexpr size_t kMinBytes = size_t{64} << 10;  // below this malloc is fast already
  static constexpr size_t kMaxCachedBytes = size_t{160} << 20;

  void* take(size_t bytes) {
    std::lock_guard lock(mutex_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= bytes;
    return p;
  }
  // Keeps the buffer unless the cache is full; returns false if the caller must free it.
  bool give(void* p, size_t bytes) {
    std::lock_guard lock(mutex_);
    if (bytes > kMaxCachedBytes) return false;
    for (auto it = free_.begin(); cached_ + bytes > kMaxCachedBytes && it != free_.end(); ++it) {
      if (it->first == bytes) continue;
      while (!it->second.empty() && cached_ + bytes > kMaxCachedBytes) {
        std::free(it->second.back());
        it->second.pop_back();
        cached_ -= it->first;
      }
    }
    if (cached_ + bytes > kMaxCachedBytes) return false;
    free_[bytes].push_back(p);
    cached_ += bytes;
    return true;
  }
  size_t cached() {
    std::lock_guard lock(mutex_);
    return cached_;
  }
  ~BufferCache() {
    for (auto& [bytes, buffers] : free_)
      for (void* p : buffers) std::free(p);
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

BufferCache& buffer_cache() {
  static BufferCache* cache = new BufferCache;  // never destroyed: tensors may outlive statics
  return *cache;
}

// 64-byte aligned so kernels can use full-width vector loads.
std::shared_ptr<void> allocate(size_t bytes) {
  // Rounded to 4 KiB above the cache threshold so nearby sizes share buffers.
  const size_t rounded = bytes >= BufferCache::kMinBytes
                             ? (bytes + 4095) / 4096 * 4096
                             : (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  if (rounded >= BufferCache::kMinBytes) {
    void* p = buffer_cache().take(rounded);
    if (!p) p = std::aligned_alloc(64, rounded);
    if (!p) fail("Tensor: out of memory allocating {} bytes", bytes);
    note_allocated(rounded);
    return std::shared_ptr<void>(p, [rounded](void* q) {
      note_freed(rounded);
      if (!buffer_cache().give(q, rounded)) std::free(q);
    });
  }
  // Small buffers share one allocation with their reference count: the block is over-allocated
  // by 63 bytes and the aliasing pointer starts at the first 64-byte boundary inside it. Half
  // the allocations of a small op (scalars, biases) are these.
  std::shared_ptr<std::byte[]> block;
  try {
    block = std::allocate_shared_for_overwrite<std::byte[]>(CountingAllocator<std::byte>(),
                                                            rounded + 63);
  } catch (const std::bad_alloc&) {
    fail("Tensor: out of memory allocating {} bytes", bytes);
  }
  auto address = reinterpret_cast<uintptr_t>(block.get());
  void* aligned = block.get() + ((64 - address % 64) % 64);
  return std::shared_ptr<void>(std::move(block), aligned);
}

template <class F>
decltype(auto) visit_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    default:
      return f(int64_t{});
  }
}

void check_shape(const Shape& shape, const char* who) {
  for (int64_t d : shape)
    if (d < 0) fail("{}: shape {} has a negative dimension", who, shape);
}

}  // namespace

Tensor::Tensor(const Shape& shape, DType dtype) : shape_(shape), dtype_(dtype) {
  check_shape(shape, "Tensor");
  // Refuse sizes no machine has before asking the allocator (hostile attributes or files must
  // give an error, not an abort or an out-of-memory kill).
  constexpr int64_t kMaxBytes = int64_t{1} << 40;
  int64_t elements = 1;
  const bool empty = std::find(shape.begin(), shape.end(), 0) != shape.end();
  for (int64_t d : shape)
    if (!empty && __builtin_mul_overflow(elements, d, &elements))
      fail("Tensor: shape {} has too many elements", shape);
  if (empty) elements = 0;
  if (elements > kMaxBytes / static_cast<int64_t>(dtype_size(dtype)))
    fail(
        "Tensor: shape {} of {} needs {} elements, more than the 1 TiB deltagraph allocates at "
        "once",
        shape, dtype_name(dtype), elements);
  storage_ = allocate(nbytes());
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t(shape, dtype);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t(shape, dtype);
  t.fill(value);
  return t;
}

void Tensor::fill(double value) {
  visit_dtype(dtype_, [&](auto zero) {
    using T = decltype(zero);
    std::fill_n(static_cast<T*>(raw()), numel(), static_cast<T>(value));
  });
}

template <class T>
Tensor Tensor::from(std::span<const T> values, const Shape& shape) {
  if (static_cast<int64_t>(values.size()) != shape.product())
    fail("Tensor::from: {} values do not fill shape {} ({} elements)", values.size(), shape,
         shape.product());
  Tensor t(shape, dtype_of<T>());
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}
template Tensor Tensor::from<float>(std::span<const float>, const Shape&);
template Tensor Tensor::from<double>(std::span<const double>, const Shape&);
template Tensor Tensor::from<int64_t>(std::span<const int64_t>, const Shape&);

Tensor Tensor::arange(int64_t n, DType dtype, double start, double step) {
  Tensor t({n}, dtype);
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + step * static_cast<double>(i));
  });
  return t;
}

Tensor Tensor::randn(const Shape& shape, uint64_t seed, DType dtype, double mean, double stddev) {
  if (!is_floating(dtype)) fail("Tensor::randn: dtype must be float32 or float64, got int64");
  Tensor t(shape, dtype);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, stddev);
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    for (T& v : t.values<T>()) v = static_cast<T>(dist(rng));
  });
  return t;
}

Tensor Tensor::uniform(const Shape& shape, uint64_t seed, DType dtype, double low, double high) {
  Tensor t(shape, dtype);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(low, high);
  visit_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    for (T& v : t.values<T>()) v = static_cast<T>(dist(rng));
  });
  return t;
}

int64_t Tensor::size(int axis) const {
  int a = axis < 0 ? axis + dim() : axis;
  if (a < 0 || a >= dim()) fail("Tensor::size: axis {} is out of range for shape {}", axis, shape_);
  return shape_[a];
}

void Tensor::check_access(DType requested) const {
  if (!defined()) fail("Tensor: access to an undefined tensor");
  if (requested != dtype_)
    fail("Tensor: data requested as {} but the tensor holds {} (shape {})", dtype_name(requested),
         dtype_name(dtype_), shape_);
}

double Tensor::at(int64_t i) const {
  if (!defined()) fail("Tensor::at: undefined tensor");
  if (i < 0 || i >= numel()) fail("Tensor::at: index {} out of range for shape {}", i, shape_);
  return visit_dtype(dtype_, [&](auto zero) {
    using T = decltype(zero);
    return static_cast<double>(static_cast<const T*>(raw())[i]);
  });
}

double Tensor::item() const {
  if (!defined() || numel() != 1)
    fail("Tensor::item: needs exactly one element, the tensor has shape {}", shape_);
  return at(0);
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> out(numel());
  for (int64_t i = 0; i < numel(); ++i) out[i] = at(i);
  return out;
}

Shape infer_reshape(const Shape& target, int64_t numel, const char* who) {
  Shape out = target;
  int infer_at = -1;
  int64_t known = 1;
  for (int i = 0; i < target.size(); ++i) {
    if (target[i] == -1) {
      if (infer_at >= 0) fail<ShapeError>("{}: target shape {} has more than one -1", who, target);
      infer_at = i;
    } else if (target[i] < 0) {
      fail<ShapeError>("{}: target shape {} has a negative size", who, target);
    } else if (__builtin_mul_overflow(known, target[i], &known)) {
      // An absurd target (from a case file, say) must not wrap around to a plausible count.
      fail<ShapeError>("{}: target shape {} has more elements than int64 can count", who, target);
    }
  }
  if (infer_at >= 0) {
    if (known == 0 || numel % known != 0)
      fail<ShapeError>("{}: cannot reshape {} elements into {}: {} is not a multiple of {}", who,
                       numel, target, numel, known);
    out[infer_at] = numel / known;
  } else if (known != numel) {
    fail<ShapeError>("{}: cannot reshape {} elements into {} ({} elements)", who, numel, target,
                     known);
  }
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (!defined()) fail("Tensor::reshape: undefined tensor");
  Tensor t = *this;
  t.shape_ = infer_reshape(shape, numel(), "reshape");
  return t;
}

Tensor Tensor::clone() const {
  if (!defined()) return {};
  Tensor t(shape_, dtype_);
  std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (!defined()) fail("Tensor::to: undefined tensor");
  if (dtype == dtype_) return *this;
  Tensor t(shape_, dtype);
  visit_dtype(dtype_, [&](auto from_zero) {
    using From = decltype(from_zero);
    visit_dtype(dtype, [&](auto to_zero) {
      using To = decltype(to_zero);
      const From* src = static_cast<const From*>(raw());
      To* dst = static_cast<To*>(t.raw());
      for (int64_t i = 0; i < numel(); ++i) dst[i] = static_cast<To>(src[i]);
    });
  });
  return t;
}

namespace {

void append_value(std::string& s, const Tensor& t, int64_t i) {
  if (t.dtype() == DType::i64)
    s += fmt::format("{}", t.data<int64_t>()[i]);
  else
    s += fmt::format("{:.6g}", t.at(i));
}

// Prints nested brackets; along each axis with more than 6 entries, shows the first and last 3.
void append_axis(std::string& s, const Tensor& t, int axis, int64_t offset,
                 const std::vector<int64_t>& strides) {
  int64_t n = t.shape()[axis];
  s += "[";
  for (int64_t i = 0; i < n; ++i) {
    if (n > 6 && i == 3) {
      s += "..., ";
      i = n - 3;
    }
    if (axis + 1 == t.dim())
      append_value(s, t, offset + i);
    else
      append_axis(s, t, axis + 1, offset + i * strides[axis], strides);
    if (i + 1 < n) s += axis + 1 == t.dim() ? ", " : ",\n" + std::string(axis + 1, ' ');
  }
  s += "]";
}

}  // namespace

std::string to_string(const Tensor& t) {
  if (!t.defined()) return "Tensor(undefined)";
  std::string s = fmt::format("Tensor({} {} ", dtype_name(t.dtype()), t.shape());
  if (t.dim() == 0) {
    append_value(s, t, 0);
  } else {
    std::vector<int64_t> strides(t.dim(), 1);
    for (int i = t.dim() - 2; i >= 0; --i) strides[i] = strides[i + 1] * t.shape()[i + 1];
    append_axis(s, t, 0, 0, strides);
  }
  return s + ")";
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (!(a.shape() == b.shape())) return false;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double x = a.at(i), y = b.at(i);
    if (!(std::abs(x - y) <= atol + rtol * std::abs(y))) return false;
  }
  return true;
}

MemoryStats memory_stats() {
  return {live_storage.load(std::memory_order_relaxed),
          peak_storage.load(std::memory_order_relaxed),
          static_cast<int64_t>(buffer_cache().cached())};
}

void reset_peak_memory() {
  peak_storage.store(live_storage.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

}  // namespace dg
