// deltagraph: SmallVector, a vector whose first N elements live inside the object.
//
// The tape records one node per op; a node's inputs, outputs and attributes are almost always
// one to three values. Keeping those inline makes a recorded op one allocation (the node)
// instead of four, and the engine's per-node scratch arrays none at all. Beyond N elements it
// moves everything to the heap, like std::vector. Elements are contiguous (it converts to
// std::span); unlike std::vector it never shrinks back to the inline buffer except on move.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <new>
#include <utility>

namespace dg {

template <class T, size_t N>
class SmallVector {
 public:
  using value_type = T;
  using size_type = size_t;
  using iterator = T*;
  using const_iterator = const T*;
  using reference = T&;
  using const_reference = const T&;

  SmallVector() noexcept = default;
  SmallVector(std::initializer_list<T> init) { assign(init.begin(), init.end()); }
  template <class It>
  SmallVector(It first, It last) {
    assign(first, last);
  }
  SmallVector(const SmallVector& other) { assign(other.begin(), other.end()); }
  SmallVector(SmallVector&& other) noexcept { take(std::move(other)); }
  SmallVector& operator=(const SmallVector& other) {
    if (this != &other) assign(other.begin(), other.end());
    return *this;
  }
  SmallVector& operator=(SmallVector&& other) noexcept {
    if (this != &other) {
      clear();
      free_heap();
      take(std::move(other));
    }
    return *this;
  }
  ~SmallVector() {
    clear();
    free_heap();
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T& front() { return data_[0]; }
  const T& front() const { return data_[0]; }
  T& back() { return data_[size_ - 1]; }
  const T& back() const { return data_[size_ - 1]; }

  void reserve(size_t n) {
    if (n > capacity_) reallocate(n, nullptr);
  }
  template <class... Args>
  T& emplace_back(Args&&... args) {
    if (size_ < capacity_) {
      T* p = ::new (static_cast<void*>(data_ + size_)) T(std::forward<Args>(args)...);
      ++size_;
      return *p;
    }
    // Construct the new element in the new buffer before the old ones move, so that
    // v.push_back(v[0]) reads a live element.
    T* p = nullptr;
    reallocate(std::max<size_t>(2 * capacity_, size_ + 1), [&](T* slot) {
      p = ::new (static_cast<void*>(slot)) T(std::forward<Args>(args)...);
    });
    ++size_;
    return *p;
  }
  void push_back(const T& value) { emplace_back(value); }
  void push_back(T&& value) { emplace_back(std::move(value)); }
  void pop_back() { data_[--size_].~T(); }
  void resize(size_t n) {
    reserve(n);
    while (size_ < n) {
      ::new (static_cast<void*>(data_ + size_)) T();
      ++size_;
    }
    while (size_ > n) pop_back();
  }
  template <class It>
  void assign(It first, It last) {
    clear();
    if constexpr (std::is_base_of_v<std::forward_iterator_tag,
                                    typename std::iterator_traits<It>::iterator_category>)
      reserve(static_cast<size_t>(std::distance(first, last)));
    for (; first != last; ++first) emplace_back(*first);
  }
  void clear() {
    // Back to front, as std::vector's elements are conventionally destroyed.
    while (size_ > 0) pop_back();
  }

 private:
  T* inline_data() { return reinterpret_cast<T*>(inline_); }
  bool on_heap() const { return data_ != reinterpret_cast<const T*>(inline_); }

  // Moves the elements into a new heap buffer of `n` slots; `construct_new` (if any) first
  // builds the element at index size_ there.
  template <class F>
  void reallocate(size_t n, F&& construct_new) {
    T* fresh = static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(alignof(T))));
    if constexpr (!std::is_same_v<std::decay_t<F>, std::nullptr_t>) {
      try {
        construct_new(fresh + size_);
      } catch (...) {
        ::operator delete(fresh, std::align_val_t(alignof(T)));
        throw;
      }
    }
    for (size_t i = 0; i < size_; ++i) {
      ::new (static_cast<void*>(fresh + i)) T(std::move(data_[i]));
      data_[i].~T();
    }
    free_heap();
    data_ = fresh;
    capacity_ = static_cast<uint32_t>(n);
  }
  void free_heap() {
    if (on_heap()) ::operator delete(data_, std::align_val_t(alignof(T)));
    data_ = inline_data();
    capacity_ = N;
  }
  // Takes other's elements; other is left empty. Requires this to be empty and inline.
  void take(SmallVector&& other) {
    if (other.on_heap()) {
      data_ = other.data_;
      size_ = other.size_;
      capacity_ = other.capacity_;
      other.data_ = other.inline_data();
      other.size_ = 0;
      other.capacity_ = N;
      return;
    }
    for (size_t i = 0; i < other.size_; ++i)
      ::new (static_cast<void*>(data_ + i)) T(std::move(other.data_[i]));
    size_ = other.size_;
    other.clear();
  }

  T* data_ = reinterpret_cast<T*>(inline_);
  uint32_t size_ = 0;
  uint32_t capacity_ = N;
  alignas(T) std::byte inline_[N * sizeof(T)];
};

}  // namespace dg
