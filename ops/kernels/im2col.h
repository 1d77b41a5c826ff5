// im2col / col2im: the lowering that turns a convolution into one matrix product.
//
// For one image of C channels (H x W) and a kernel kH x kW applied on an output grid Ho x Wo,
// col is a [C*kH*kW, Ho*Wo] row-major matrix: row (c, p, q), column (i, j) holds
// x[c, i*sh - ph + p*dh, j*sw - pw + q*dw], or 0 where that falls in the padding.
// col2im is its adjoint: it adds each col entry back onto that input position.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace dg::kernels {

struct ConvGeometry {
  int64_t C, H, W;  // input channels and size
  int64_t kH, kW;   // kernel
  int64_t sh, sw;   // stride
  int64_t ph, pw;   // padding at the top and at the left (the bottom/right follows from Ho, Wo)
  int64_t dh, dw;   // dilation
  int64_t Ho, Wo;   // output grid

  int64_t col_rows() const { return C * kH * kW; }
  int64_t col_cols() const { return Ho * Wo; }
  // True when col would equal the input itself (1x1 kernel, stride 1, no padding).
  bool is_pointwise() const {
    return kH == 1 && kW == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && Ho == H && Wo == W;
  }
  // The output columns j whose input column j*sw - pw + q*dw lies in [0, W).
  void valid_columns(int64_t q, int64_t& j0, int64_t& j1) const {
    const int64_t offset = q * dw - pw;  // input column of j = 0
    j0 = offset >= 0 ? 0 : (-offset + sw - 1) / sw;
    j1 = W - 1 - offset < 0 ? 0 : (W - 1 - offset) / sw + 1;
    j0 = std::min(j0, Wo);
    j1 = std::clamp(j1, j0, Wo);
  }
};

template <class T>
void im2col(const T* x, const ConvGeometry& g, T* col) {
  const int64_t cols = g.col_cols();
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t p = 0; p < g.kH; ++p)
      for (int64_t q = 0; q < g.kW; ++q) {
        T* out = col + ((c * g.kH + p) * g.kW + q) * cols;
        int64_t j0, j1;
        g.valid_columns(q, j0, j1);
        const int64_t w_first = j0 * g.sw - g.pw + q * g.dw;
        for (int64_t i = 0; i < g.Ho; ++i) {
          T* row = out + i * g.Wo;
          const int64_t h = i * g.sh - g.ph + p * g.dh;
          if (h < 0 || h >= g.H) {
            std::fill(row, row + g.Wo, T(0));
            continue;
          }
          const T* in = x + (c * g.H + h) * g.W + w_first;
          std::fill(row, row + j0, T(0));
          if (g.sw == 1)
            std::memcpy(row + j0, in, (j1 - j0) * sizeof(T));
          else
            for (int64_t j = j0; j < j1; ++j) row[j] = in[(j - j0) * g.sw];
          std::fill(row + j1, row + g.Wo, T(0));
        }
      }
}

// x += col2im(col); x must be initialised by the caller.
template <class T>
void col2im_add(const T* col, const ConvGeometry& g, T* x) {
  const int64_t cols = g.col_cols();
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t p = 0; p < g.kH; ++p)
      for (int64_t q = 0; q < g.kW; ++q) {
        const T* in = col + ((c * g.kH + p) * g.kW + q) * cols;
        int64_t j0, j1;
        g.valid_columns(q, j0, j1);
        const int64_t w_first = j0 * g.sw - g.pw + q * g.dw;
        for (int64_t i = 0; i < g.Ho; ++i) {
          const int64_t h = i * g.sh - g.ph + p * g.dh;
          if (h < 0 || h >= g.H) continue;
          T* out = x + (c * g.H + h) * g.W + w_first;
          const T* row = in + i * g.Wo;
          if (g.sw == 1)
            for (int64_t j = j0; j < j1; ++j) out[j - j0] += row[j];
          else
            for (int64_t j = j0; j < j1; ++j) out[(j - j0) * g.sw] += row[j];
        }
      }
}

}  // namespace dg::kernels
