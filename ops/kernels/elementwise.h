// Elementwise loops shared by the arithmetic and activation families: unary maps, same-shape
// binary maps and numpy-style broadcasting binary maps. Single pass, split over threads.
#pragma once

#include "deltagraph/core/tensor.h"
#include "kernels/parallel_for.h"

namespace dg::kernels {

// y[i] = f(x[i])
template <class T, class F>
void map(const Tensor& x, Tensor& y, F f) {
  const T* px = x.data<T>();
  T* py = y.data<T>();
  parallel_for(x.numel(), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) py[i] = f(px[i]);
  });
}

// Strides of a tensor of shape `in` seen through the broadcast shape `out` (numpy rules:
// shapes are aligned at the right; an axis of size 1 is repeated, its stride becomes 0).
inline Shape broadcast_strides(const Shape& in, const Shape& out) {
  Shape strides;
  strides.resize(out.size(), 0);
  int64_t stride = 1;
  for (int i = in.size() - 1, j = out.size() - 1; i >= 0; --i, --j) {
    strides[j] = in[i] == 1 && out[j] != 1 ? 0 : stride;
    stride *= in[i];
  }
  return strides;
}

// Offset of output row `row` (index over all axes but the last) in a tensor with `strides`.
inline int64_t row_offset(int64_t row, const Shape& out, const Shape& strides) {
  int64_t offset = 0;
  for (int d = out.size() - 2; d >= 0; --d) {
    offset += (row % out[d]) * strides[d];
    row /= out[d];
  }
  return offset;
}

// y[i] = f(a[ia], b[ib]) with numpy broadcasting; y has the broadcast shape.
template <class T, class F>
void zip(const Tensor& a, const Tensor& b, Tensor& y, F f) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* py = y.data<T>();
  const int64_t n = y.numel();
  if (a.shape() == y.shape() && b.shape() == y.shape()) {
    parallel_for(n, 1, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) py[i] = f(pa[i], pb[i]);
    });
    return;
  }
  if (y.dim() == 0 || n == 0) {
    if (n) py[0] = f(pa[0], pb[0]);
    return;
  }
  const Shape& out = y.shape();
  const Shape sa = broadcast_strides(a.shape(), out), sb = broadcast_strides(b.shape(), out);
  const int64_t inner = out.back(), rows = n / inner;
  const int64_t ia = sa.back(), ib = sb.back();
  parallel_for(rows, inner, [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      const T* ra = pa + row_offset(r, out, sa);
      const T* rb = pb + row_offset(r, out, sb);
      T* ry = py + r * inner;
      for (int64_t i = 0; i < inner; ++i) ry[i] = f(ra[i * ia], rb[i * ib]);
    }
  });
}

}  // namespace dg::kernels
