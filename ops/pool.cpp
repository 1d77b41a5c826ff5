// The pooling family: max_pool2d (values and int64 indices), max_unpool2d, the index routing
// pair gather_at / scatter_add_at, avg_pool2d with its adjoint avg_pool2d_backward, and
// adaptive_avg_pool2d with its adjoint adaptive_avg_pool2d_backward.
//
// Index convention (PyTorch's return_indices): the flat position h*W + w of each maximum in its
// unpadded (n, c) input plane. Routing through indices closes the family under differentiation:
//   max_pool2d    VJP: dx = scatter_add_at(g, indices, [H, W])   (overlapping windows add up)
//   scatter_add_at VJP: dx = gather_at(g, indices)
//   gather_at     VJP: dx = scatter_add_at(g, indices, [H, W])
//   max_unpool2d  VJP: dx = gather_at(g, indices)
#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <type_traits>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {

// Window geometry of one pooling op, per axis: p padding cells before the input (top or left),
// p_after after it (bottom or right).
struct PoolAxis {
  int64_t in, k, s, p, p_after, d, out;
};

// Output size of a pooling window along one axis (FORMAT.md 5.5): floor or ceil division, and in
// ceil mode the last window must start inside the input or its left/top padding.
int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t p_after, int64_t d,
                 bool ceil_mode) {
  const int64_t span = in + p + p_after - d * (k - 1) - 1;
  if (span < 0) return 0;
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

struct PoolGeometry {
  PoolAxis h, w;
  int64_t N, C;
};

Pair stride_or_kernel(const Attrs& a) {
  Pair s = a.pair("stride"), k = a.pair("kernel_size");
  return {s.h == 0 ? k.h : s.h, s.w == 0 ? k.w : s.w};
}

// A pool's padding: numbers only, none negative, none more than half its window (PyTorch's rule,
// per side).
Padding pool_padding(const OpCall& c, Pair k) {
  const Padding p = c.attrs.padding("padding");
  if (p.same())
    shape_fail(c,
               "padding \"same\" is for conv2d; a pool takes p, [h, w] or [top, bottom, left, "
               "right]");
  if (std::min({p.top, p.bottom, p.left, p.right}) < 0 || 2 * std::max(p.top, p.bottom) > k.h ||
      2 * std::max(p.left, p.right) > k.w)
    shape_fail(c, "padding {} must be between 0 and half the kernel [{},{}]", padding_text(p), k.h,
               k.w);
  return p;
}

// Validates a pooling op's attributes against the input (x [N,C,H,W]); dilation 1 for ops
// without one.
PoolGeometry pool_geometry(const OpCall& c, const Shape& x, bool has_dilation, bool ceil_mode) {
  const Pair k = c.attrs.pair("kernel_size"), s = stride_or_kernel(c.attrs);
  const Pair d = has_dilation ? c.attrs.pair("dilation") : Pair{1, 1};
  if (k.h < 1 || k.w < 1) shape_fail(c, "kernel_size must be at least 1, got [{},{}]", k.h, k.w);
  if (s.h < 1 || s.w < 1)
    shape_fail(c, "stride must be at least 1 (or 0 for kernel_size), got [{},{}]", s.h, s.w);
  if (d.h < 1 || d.w < 1) shape_fail(c, "dilation must be at least 1, got [{},{}]", d.h, d.w);
  const Padding p = pool_padding(c, k);
  PoolGeometry g{{x[2], k.h, s.h, p.top, p.bottom, d.h,
                  pool_out(x[2], k.h, s.h, p.top, p.bottom, d.h, ceil_mode)},
                 {x[3], k.w, s.w, p.left, p.right, d.w,
                  pool_out(x[3], k.w, s.w, p.left, p.right, d.w, ceil_mode)},
                 x[0],
                 x[1]};
  // With dilation, a window can straddle the whole input and hold padding only; PyTorch would
  // return -inf there. Every window must see at least one real element.
  auto window_hits_input = [](const PoolAxis& a, int64_t i) {
    for (int64_t p = 0; p < a.k; ++p) {
      const int64_t h = i * a.s - a.p + p * a.d;
      if (h >= 0 && h < a.in) return true;
    }
    return false;
  };
  for (const auto& [axis, name] : {std::pair{&g.h, "row"}, std::pair{&g.w, "column"}})
    for (int64_t i = 0; i < axis->out; ++i)
      if (!window_hits_input(*axis, i))
        shape_fail(
            c,
            "output {} {} of input {}x{} with kernel [{},{}], stride [{},{}], padding {} and "
            "dilation [{},{}] covers only padding",
            name, i, x[2], x[3], k.h, k.w, s.h, s.w, padding_text(p), d.h, d.w);
  if (g.h.out < 1 || g.w.out < 1) {
    std::string dilation =
        d.h == 1 && d.w == 1 ? "" : fmt::format(" and dilation [{},{}]", d.h, d.w);
    shape_fail(
        c, "kernel [{},{}] with padding {}{} does not fit in input {}x{} (output would be {}x{})",
        k.h, k.w, padding_text(p), dilation, x[2], x[3], std::max<int64_t>(g.h.out, 0),
        std::max<int64_t>(g.w.out, 0));
  }
  return g;
}

// The flat input-plane positions of int64 indices must lie in [0, plane).
void check_indices(const OpCall& c, int input, int64_t plane, int64_t H, int64_t W) {
  const Tensor& idx = c.input(input);
  const int64_t* p = idx.data<int64_t>();
  // One branch-free pass (it vectorises) to learn whether any index is bad; only then a
  // second one to find and name the first.
  const auto n = static_cast<uint64_t>(idx.numel());
  uint64_t bad = 0;
#pragma omp simd reduction(+ : bad)
  for (uint64_t i = 0; i < n; ++i)
    bad += static_cast<uint64_t>(p[i]) >= static_cast<uint64_t>(plane);
  if (!bad) return;
  for (int64_t i = 0; i < idx.numel(); ++i)
    if (p[i] < 0 || p[i] >= plane)
      shape_fail(c, "{}{} = {} is outside the {}x{} plane (valid flat indices are 0..{})",
                 c.op.input_name(input), multi_index(idx.shape(), i), p[i], H, W, plane - 1);
}

void expect_same_shape(const OpCall& c, int a, int b) {
  if (!(c.input(a).shape() == c.input(b).shape()))
    shape_fail(c, "{} is {} but {} is {}; they must have the same shape", c.op.input_name(a),
               c.input(a).shape(), c.op.input_name(b), c.input(b).shape());
}

// ---- kernels ------------------------------------------------------------------------------

#if defined(__AVX512F__)
// The interior 2x2 stride-2 windows [j0, j1) of one output row, 16 at a time. top is the
// window row's first input (column -padding), W the input width, first top's flat index in
// the plane. The candidates are taken in the order (0,0) (0,1) (1,0) (1,1), each only if
// greater, or NaN while the best so far is not (_CMP_NLE_UQ with an ordered best): the
// generic loop's rule, so ties and NaNs resolve the same. Written with intrinsics because GCC
// does not vectorise the stride-2 select chain, and these windows are most of a CNN's pooling.
inline void max_pool_2x2_row(const float* top, int64_t W, int64_t first, int64_t j0, int64_t j1,
                             float* best, int64_t* where) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const float* bottom = top + W;
  for (int64_t j = j0; j < j1; j += 16) {
    const int n = static_cast<int>(std::min<int64_t>(16, j1 - j));
    const auto out_mask = static_cast<__mmask16>((1u << n) - 1);
    const auto lo = static_cast<__mmask16>(n >= 8 ? 0xFFFF : (1u << (2 * n)) - 1);
    const auto hi = static_cast<__mmask16>(n <= 8 ? 0 : (1u << (2 * n - 16)) - 1);
    const __m512 t0 = _mm512_maskz_loadu_ps(lo, top + 2 * j);
    const __m512 t1 = _mm512_maskz_loadu_ps(hi, top + 2 * j + 16);
    const __m512 b0 = _mm512_maskz_loadu_ps(lo, bottom + 2 * j);
    const __m512 b1 = _mm512_maskz_loadu_ps(hi, bottom + 2 * j + 16);
    __m512 m = _mm512_permutex2var_ps(t0, even, t1);
    __m512i code = _mm512_setzero_si512();
    auto consider = [&](__m512 v, int offset_code) {
      const __mmask16 take =
          _mm512_cmp_ps_mask(v, m, _CMP_NLE_UQ) & _mm512_cmp_ps_mask(m, m, _CMP_ORD_Q);
      m = _mm512_mask_blend_ps(take, m, v);
      code = _mm512_mask_blend_epi32(take, code, _mm512_set1_epi32(offset_code));
    };
    consider(_mm512_permutex2var_ps(t0, odd, t1), 1);   // (0,1)
    consider(_mm512_permutex2var_ps(b0, even, b1), 2);  // (1,0)
    consider(_mm512_permutex2var_ps(b0, odd, b1), 3);   // (1,1)
    _mm512_mask_storeu_ps(best + j, out_mask, m);
    // where = first + 2(j + lane) + column offset (code & 1) + row offset (code >= 2 ? W : 0),
    // in two halves of 8 int64 lanes.
    const __m512i halves[2] = {_mm512_cvtepi32_epi64(_mm512_castsi512_si256(code)),
                               _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(code, 1))};
    for (int half = 0; half < 2; ++half) {
      const __m512i c = halves[half];
      const __m512i start = _mm512_add_epi64(_mm512_set1_epi64(first + 2 * (j + 8 * half)),
                                             _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0));
      const __m512i column = _mm512_and_si512(c, _mm512_set1_epi64(1));
      const __m512i row = _mm512_maskz_mov_epi64(_mm512_cmpge_epi64_mask(c, _mm512_set1_epi64(2)),
                                                 _mm512_set1_epi64(W));
      _mm512_mask_storeu_epi64(where + j + 8 * half, static_cast<__mmask8>(out_mask >> (8 * half)),
                               _mm512_add_epi64(start, _mm512_add_epi64(column, row)));
    }
  }
}
#endif

template <class T>
void max_pool_forward(const Tensor& x, const PoolGeometry& g, Tensor& y, Tensor& indices) {
  const T* px = x.data<T>();
  T* py = y.data<T>();
  int64_t* pi = indices.data<int64_t>();
  const PoolAxis &ah = g.h, &aw = g.w;
  const int64_t plane_in = ah.in * aw.in, plane_out = ah.out * aw.out;
  [[maybe_unused]] const bool two_by_two =
      ah.k == 2 && aw.k == 2 && aw.s == 2 && ah.d == 1 && aw.d == 1;
  kernels::parallel_for(g.N * g.C, plane_out * ah.k * aw.k, [&](int64_t b, int64_t e) {
    for (int64_t plane = b; plane < e; ++plane) {
      const T* xp = px + plane * plane_in;
      T* yp = py + plane * plane_out;
      int64_t* ip = pi + plane * plane_out;
      for (int64_t i = 0; i < ah.out; ++i) {
        const int64_t h0 = i * ah.s - ah.p;
        const bool rows_inside = h0 >= 0 && h0 + (ah.k - 1) * ah.d < ah.in;
        // Interior windows of this row, [j_lo, j_hi): no bounds to check. They are done a
        // window offset (p, q) at a time across the whole row, so the loop over j has no
        // dependency and vectorises; the comparison is a select, not a branch (which is the
        // maximum is data-dependent, so branches would mispredict half the time).
        int64_t j_lo = 0, j_hi = 0;
        if (rows_inside) {
          j_lo = std::min(aw.out, (aw.p + aw.s - 1) / aw.s);
          const int64_t last_start = aw.in - 1 - (aw.k - 1) * aw.d + aw.p;  // largest j*s
          j_hi = last_start < 0 ? j_lo : std::clamp(last_start / aw.s + 1, j_lo, aw.out);
          // Distinct buffers (restrict), or the compiler keeps the loop scalar for fear that
          // the stores alias x.
          T* __restrict best = yp + i * aw.out;
          int64_t* __restrict where = ip + i * aw.out;
          const T* __restrict xin = xp;
          const int64_t first = h0 * aw.in - aw.p;
          bool done = false;
#if defined(__AVX512F__)
          if constexpr (std::is_same_v<T, float>) {
            if (two_by_two) {
              max_pool_2x2_row(xin + first, aw.in, first, j_lo, j_hi, best, where);
              done = true;
            }
          }
#endif
          for (int64_t j = j_lo; j < j_hi && !done; ++j) {
            best[j] = xin[first + j * aw.s];
            where[j] = first + j * aw.s;
          }
          for (int64_t p = 0; p < ah.k && !done; ++p)
            for (int64_t q = p == 0 ? 1 : 0; q < aw.k; ++q) {
              const int64_t base = (h0 + p * ah.d) * aw.in - aw.p + q * aw.d;
#pragma omp simd
              for (int64_t j = j_lo; j < j_hi; ++j) {
                const int64_t at = base + j * aw.s;
                const T v = xin[at];
                // v > best, or v is NaN while best is not (NaN stays once taken): one
                // unordered compare each.
                const bool take = !(v <= best[j]) & (best[j] == best[j]);
                best[j] = take ? v : best[j];
                where[j] = take ? at : where[j];
              }
            }
        }
        for (int64_t j = 0; j < aw.out; ++j) {
          if (j == j_lo && j_hi > j_lo) {
            j = j_hi - 1;
            continue;
          }
          const int64_t w0 = j * aw.s - aw.p;
          T best = -std::numeric_limits<T>::infinity();
          int64_t where = -1;
          // A window over the border. Strictly greater: the first maximum wins ties. A NaN is
          // taken (and propagates), as in PyTorch's kernel.
          auto consider = [&](int64_t h, int64_t w) {
            const T v = xp[h * aw.in + w];
            if (where < 0 || v > best || v != v) {
              best = v;
              where = h * aw.in + w;
            }
          };
          for (int64_t p = 0; p < ah.k; ++p) {
            const int64_t h = h0 + p * ah.d;
            if (h < 0 || h >= ah.in) continue;
            for (int64_t q = 0; q < aw.k; ++q) {
              const int64_t w = w0 + q * aw.d;
              if (w >= 0 && w < aw.in) consider(h, w);
            }
          }
          yp[i * aw.out + j] = best;
          ip[i * aw.out + j] = where;
        }
      }
    }
  });
}

// out[n,c].flat[indices[n,c,...]] (+)= x[n,c,...]; `accumulate` false assigns (max_unpool2d).
template <class T>
void scatter(const Tensor& x, const Tensor& indices, Tensor& out, bool accumulate) {
  const int64_t planes = x.shape()[0] * x.shape()[1];
  const int64_t in_plane = x.numel() / std::max<int64_t>(planes, 1);
  const int64_t out_plane = out.numel() / std::max<int64_t>(planes, 1);
  const T* px = x.data<T>();
  const int64_t* pi = indices.data<int64_t>();
  T* po = out.data<T>();
  // Each plane is zeroed by the thread that scatters into it, just before: the plane is still
  // in cache for the scatter, and the output goes to memory once (a separate fill of the whole
  // output first was a single-threaded pass of its own, ~25% of max_pool2d's backward).
  kernels::parallel_for(planes, in_plane + out_plane, [&](int64_t b, int64_t e) {
    for (int64_t plane = b; plane < e; ++plane) {
      T* o = po + plane * out_plane;
      std::fill(o, o + out_plane, T(0));
      for (int64_t i = plane * in_plane; i < (plane + 1) * in_plane; ++i) {
        if (accumulate)
          o[pi[i]] += px[i];
        else
          o[pi[i]] = px[i];
      }
    }
  });
}

// out[n,c,...] = x[n,c].flat[indices[n,c,...]]
template <class T>
void gather(const Tensor& x, const Tensor& indices, Tensor& out) {
  const int64_t planes = x.shape()[0] * x.shape()[1];
  const int64_t x_plane = x.numel() / std::max<int64_t>(planes, 1);
  const int64_t out_plane = out.numel() / std::max<int64_t>(planes, 1);
  const T* px = x.data<T>();
  const int64_t* pi = indices.data<int64_t>();
  T* po = out.data<T>();
  kernels::parallel_for(planes, out_plane, [&](int64_t b, int64_t e) {
    for (int64_t plane = b; plane < e; ++plane)
      for (int64_t i = plane * out_plane; i < (plane + 1) * out_plane; ++i)
        po[i] = px[plane * x_plane + pi[i]];
  });
}

// One average-pooling window along an axis: its real extent [lo, hi) and its padded length.
struct AvgSpan {
  int64_t lo, hi, padded;
};
AvgSpan avg_span(const PoolAxis& a, int64_t i) {
  int64_t lo = i * a.s - a.p;
  int64_t hi = std::min(lo + a.k, a.in + a.p_after);
  const int64_t padded = hi - lo;
  return {std::max<int64_t>(lo, 0), std::min(hi, a.in), padded};
}

// Calls visit(plane, out_offset, span_h, span_w, divisor) for every avg-pooling window, split
// over the (n, c) planes.
template <class Visit>
void for_each_avg_window(const PoolGeometry& g, bool count_include_pad, Visit visit) {
  const PoolAxis &ah = g.h, &aw = g.w;
  kernels::parallel_for(g.N * g.C, ah.out * aw.out * ah.k * aw.k, [&](int64_t b, int64_t e) {
    for (int64_t plane = b; plane < e; ++plane)
      for (int64_t i = 0; i < ah.out; ++i) {
        const AvgSpan sh = avg_span(ah, i);
        for (int64_t j = 0; j < aw.out; ++j) {
          const AvgSpan sw = avg_span(aw, j);
          const int64_t divisor =
              count_include_pad ? sh.padded * sw.padded : (sh.hi - sh.lo) * (sw.hi - sw.lo);
          visit(plane, i * aw.out + j, sh, sw, divisor);
        }
      }
  });
}

// y = window sums / divisor.
template <class T>
void avg_pool_forward(const Tensor& x, const PoolGeometry& g, bool count_include_pad, Tensor& y) {
  const T* px = x.data<T>();
  T* py = y.data<T>();
  const int64_t plane_in = g.h.in * g.w.in, plane_out = g.h.out * g.w.out;
  for_each_avg_window(
      g, count_include_pad, [&](int64_t plane, int64_t o, AvgSpan sh, AvgSpan sw, int64_t divisor) {
        const T* in = px + plane * plane_in;
        T total = 0;
        for (int64_t h = sh.lo; h < sh.hi; ++h)
          for (int64_t w = sw.lo; w < sw.hi; ++w) total += in[h * g.w.in + w];
        py[plane * plane_out + o] = divisor ? total / static_cast<T>(divisor) : T(0);
      });
}

// dx += g / divisor over each window (overlapping windows add up); dx must start at zero.
template <class T>
void avg_pool_adjoint(const Tensor& grad, const PoolGeometry& g, bool count_include_pad,
                      Tensor& dx) {
  const T* pg = grad.data<T>();
  T* pd = dx.data<T>();
  const int64_t plane_in = g.h.in * g.w.in, plane_out = g.h.out * g.w.out;
  for_each_avg_window(
      g, count_include_pad, [&](int64_t plane, int64_t o, AvgSpan sh, AvgSpan sw, int64_t divisor) {
        const T share = divisor ? pg[plane * plane_out + o] / static_cast<T>(divisor) : T(0);
        T* in = pd + plane * plane_in;
        for (int64_t h = sh.lo; h < sh.hi; ++h)
          for (int64_t w = sw.lo; w < sw.hi; ++w) in[h * g.w.in + w] += share;
      });
}

// ---- registration -------------------------------------------------------------------------

AttrSpec kernel_attr() {
  return {"kernel_size", AttrType::pair, std::nullopt, "window [kH, kW]", "k"};
}
AttrSpec stride_attr() { return pair_attr("stride", 0, "s", "0 means kernel_size"); }

// "max_pool2d k2": a stride equal to the kernel is the default (stride 0 means kernel_size), so
// it is left out whether it was given or not; any other stride shows ("max_pool2d k3 s2").
std::string pool_label(const Attrs& attrs, std::span<const Shape>) {
  if (attrs.ints("stride") == attrs.ints("kernel_size"))
    return default_label(*attrs.op(), attrs.with({{"stride", Ints{0, 0}}}));
  return default_label(*attrs.op(), attrs);
}

std::vector<AttrSpec> avg_attrs() {
  return {kernel_attr(),
          stride_attr(),
          padding_attr("p, [h, w] or [top, bottom, left, right]"),
          {"ceil_mode", AttrType::boolean, AttrValue(false),
           "ceil instead of floor for the output size", "ceil"},
          {"count_include_pad", AttrType::boolean, AttrValue(true), "padding counts in the divisor",
           "incl_pad"}};
}

AvgPool2dOptions avg_options(const Attrs& a) {
  return {.kernel_size = a.pair("kernel_size"),
          .stride = a.pair("stride"),
          .padding = a.padding("padding"),
          .ceil_mode = a.boolean("ceil_mode"),
          .count_include_pad = a.boolean("count_include_pad")};
}

// Default unpooled size along one axis: (h-1)*s - pads + k, with `pads` cells of padding in all.
int64_t unpool_default(int64_t in, int64_t k, int64_t s, int64_t pads) {
  return (in - 1) * s - pads + k;
}

struct UnpoolSize {
  int64_t H, W;
};
UnpoolSize unpool_size(const OpCall& c) {
  const Shape& x = c.input(0).shape();
  const Pair k = c.attrs.pair("kernel_size"), s = stride_or_kernel(c.attrs);
  const Pair out = c.attrs.pair("output_size");
  if (k.h < 1 || k.w < 1) shape_fail(c, "kernel_size must be at least 1, got [{},{}]", k.h, k.w);
  if (s.h < 1 || s.w < 1)
    shape_fail(c, "stride must be at least 1 (or 0 for kernel_size), got [{},{}]", s.h, s.w);
  const Padding p = pool_padding(c, k);
  const int64_t dh = unpool_default(x[2], k.h, s.h, p.rows()),
                dw = unpool_default(x[3], k.w, s.w, p.columns());
  if (out.h == 0 && out.w == 0) {
    // Indices from max_pool2d know their plane: an odd-sized map comes back at its own size
    // (9x7 pooled by 2 is 4x3, whose formula size is 8x6). It must be a size that the pool's
    // geometry could have come from (the same window as an explicit output_size).
    const auto [ih, iw] = c.input(1).index_plane();
    if (ih > dh - s.h && ih < dh + s.h && iw > dw - s.w && iw < dw + s.w) return {ih, iw};
    if (dh < 1 || dw < 1) shape_fail(c, "the default output size {}x{} is empty", dh, dw);
    return {dh, dw};
  }
  // PyTorch accepts default - stride < output_size < default + stride on each axis.
  if (out.h <= dh - s.h || out.h >= dh + s.h || out.w <= dw - s.w || out.w >= dw + s.w ||
      out.h < 1 || out.w < 1) {
    std::string bounds =
        dh - s.h + 1 == dw - s.w + 1 && dh + s.h - 1 == dw + s.w - 1
            ? fmt::format("each side must be between {} and {}", std::max<int64_t>(dh - s.h + 1, 1),
                          dh + s.h - 1)
            : fmt::format("height must be between {} and {}, width between {} and {}",
                          std::max<int64_t>(dh - s.h + 1, 1), dh + s.h - 1,
                          std::max<int64_t>(dw - s.w + 1, 1), dw + s.w - 1);
    shape_fail(
        c,
        "output_size [{},{}] does not fit input {}x{} with kernel {}, stride {}, padding {} ({})",
        out.h, out.w, x[2], x[3], pair_label(Ints{k.h, k.w}), pair_label(Ints{s.h, s.w}),
        p.symmetric() ? pair_label(Ints{p.top, p.left}) : padding_text(p), bounds);
  }
  return {out.h, out.w};
}

// ---- samplers (property tests) ----------------------------------------------------------

struct SampledPool {
  Shape x;
  Ints kernel, stride, dilation;
  Padding padding;
  bool ceil_mode;
};

SampledPool sample_pool_config(Sampler& s, bool dilation) {
  SampledPool p;
  const int64_t kH = s.integer(1, 3), kW = s.integer(1, 3);
  p.kernel = {kH, kW};
  p.stride = {s.integer(1, 3), s.integer(1, 3)};
  // [h, w] two times in three, else four sides of their own.
  if (s.integer(0, 2) < 2)
    p.padding = Padding(s.integer(0, kH / 2), s.integer(0, kW / 2));
  else
    p.padding = {s.integer(0, kH / 2), s.integer(0, kH / 2), s.integer(0, kW / 2),
                 s.integer(0, kW / 2)};
  p.dilation = dilation ? Ints{s.integer(1, 2), s.integer(1, 2)} : Ints{1, 1};
  p.ceil_mode = s.boolean();
  const int64_t H =
      std::max<int64_t>(1, p.dilation[0] * (kH - 1) + 1 - p.padding.rows()) + s.integer(0, 4);
  const int64_t W =
      std::max<int64_t>(1, p.dilation[1] * (kW - 1) + 1 - p.padding.columns()) + s.integer(0, 4);
  p.x = {s.integer(1, 2), s.integer(1, 3), H, W};
  return p;
}

// Indices of distinct positions in each (n, c) plane of an H x W output (as a pool's would be).
Tensor unique_plane_indices(Sampler& s, const Shape& shape, int64_t H, int64_t W) {
  Tensor keys = s.distinct({shape[0], shape[1], H * W});
  Tensor idx(shape, DType::i64);
  const int64_t planes = shape[0] * shape[1], per_plane = shape[2] * shape[3];
  std::vector<int64_t> order(H * W);
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < H * W; ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return keys.at(p * H * W + a) < keys.at(p * H * W + b);
    });
    for (int64_t i = 0; i < per_plane; ++i) idx.data<int64_t>()[p * per_plane + i] = order[i];
  }
  return idx;
}

// ---- max_pool2d -------------------------------------------------------------------------------

std::vector<TensorSpec> max_pool2d_shape(const OpCall& c) {
  expect_rank(c, 0, 4, "[N,C,H,W]");
  const PoolGeometry g = pool_geometry(c, c.input(0).shape(), true, c.attrs.boolean("ceil_mode"));
  const Shape out{g.N, g.C, g.h.out, g.w.out};
  return std::vector<TensorSpec>{{out, c.input(0).dtype()}, {out, DType::i64}};
}

std::vector<Tensor> max_pool2d_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const PoolGeometry g = pool_geometry(c, c.input(0).shape(), true, c.attrs.boolean("ceil_mode"));
  Tensor y(specs[0].shape, specs[0].dtype), indices(specs[1].shape, DType::i64);
  // The indices remember the plane they index: max_unpool2d's default output size.
  indices.set_index_plane(c.input(0).size(2), c.input(0).size(3));
  dispatch_float(y.dtype(),
                 [&](auto t) { max_pool_forward<decltype(t)>(c.input(0), g, y, indices); });
  return std::vector<Tensor>{y, indices};
}

// Each output is one input element (the window's maximum), so dy = tx at the same positions.
std::vector<Var> max_pool2d_jvp(const JvpContext& c) {
  return {gather_at(c.tangent(0), c.output(1)), Var()};
}

std::vector<Var> max_pool2d_vjp(const VjpContext& c) {
  const Shape& x = c.input(0).shape();
  return {scatter_add_at(c.grad_output(0), c.output(1), {x[2], x[3]})};
}

OpSample max_pool2d_sample(Sampler& s) {
  const SampledPool p = sample_pool_config(s, true);
  return OpSample{{s.distinct(p.x)},
                  {{"kernel_size", p.kernel},
                   {"stride", p.stride},
                   {"padding", p.padding},
                   {"dilation", p.dilation},
                   {"ceil_mode", p.ceil_mode}},
                  all_batched(1)};
}

OpDef max_pool2d_def() {
  return {
      .name = "max_pool2d",
      .summary = "window maxima and their flat input-plane indices (first maximum wins ties)",
      .inputs = {{"x"}},
      .outputs = {{"y"}, {"indices", false}},
      .attrs = {kernel_attr(),
                stride_attr(),
                padding_attr("p, [h, w] or [top, bottom, left, right]; indices stay positions "
                             "h*W + w of the unpadded plane"),
                pair_attr("dilation", 1, "d"),
                {"ceil_mode", AttrType::boolean, AttrValue(false),
                 "ceil instead of floor for the output size", "ceil"}},
      .shape = max_pool2d_shape,
      .forward = max_pool2d_kernel,
      .vjp = max_pool2d_vjp,
      .vjp_formula = "dx = scatter_add_at(g, indices, [H, W])",
      .jvp = max_pool2d_jvp,
      .jvp_formula = "dy = gather_at(tx, indices)",
      .label = pool_label,
      .sample = max_pool2d_sample,
  };
}

// ---- max_unpool2d -----------------------------------------------------------------------------

std::vector<TensorSpec> max_unpool2d_shape(const OpCall& c) {
  expect_rank(c, 0, 4, "[N,C,h,w]");
  expect_same_shape(c, 0, 1);
  const UnpoolSize size = unpool_size(c);
  check_indices(c, 1, size.H * size.W, size.H, size.W);
  const Shape& x = c.input(0).shape();
  return std::vector<TensorSpec>{{{x[0], x[1], size.H, size.W}, c.input(0).dtype()}};
}

std::vector<Tensor> max_unpool2d_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor y(specs[0].shape, specs[0].dtype);
  dispatch_float(y.dtype(),
                 [&](auto t) { scatter<decltype(t)>(c.input(0), c.input(1), y, false); });
  return std::vector<Tensor>{y};
}

std::vector<Var> max_unpool2d_vjp(const VjpContext& c) {
  return {gather_at(c.grad_output(0), c.input(1)), Var()};
}

OpSample max_unpool2d_sample(Sampler& s) {
  const int64_t k = s.integer(1, 3), st = s.integer(1, 3);
  const Shape x{s.integer(1, 2), s.integer(1, 3), s.integer(1, 3), s.integer(1, 3)};
  // Within PyTorch's accepted range (default - stride, default + stride), and at least 1.
  auto size = [&](int64_t in) {
    const int64_t def = unpool_default(in, k, st, 0);
    return s.integer(std::max<int64_t>(1, def - st + 1), def + st - 1);
  };
  const int64_t H = size(x[2]), W = size(x[3]);
  return OpSample{{s.smooth(x), unique_plane_indices(s, x, H, W)},
                  {{"kernel_size", Ints{k, k}},
                   {"stride", Ints{st, st}},
                   {"padding", Ints{0, 0}},
                   {"output_size", Ints{H, W}}},
                  all_batched(2)};
}

OpDef max_unpool2d_def() {
  return {
      .name = "max_unpool2d",
      .summary = "places x at the flat indices of a zero [N,C,Ho,Wo] output (undoes max_pool2d)",
      .inputs = {{"x"}, {"indices", InputKind::int64}},
      .attrs = {kernel_attr(), stride_attr(), padding_attr("the pool's"),
                pair_attr("output_size", 0, "out",
                          "[0,0]: the pool's input size when the indices come from max_pool2d, "
                          "else (h-1)*stride - top - bottom + kernel")},
      .shape = max_unpool2d_shape,
      .forward = max_unpool2d_kernel,
      .vjp = max_unpool2d_vjp,
      .vjp_formula = "dx = gather_at(g, indices)",
      .vjp_reads_outputs = false,
      .jvp = linear_jvp,
      .jvp_formula = "dy = max_unpool2d(tx, indices)",
      .label = pool_label,
      .sample = max_unpool2d_sample,
  };
}

// ---- gather_at --------------------------------------------------------------------------------

std::vector<TensorSpec> gather_at_shape(const OpCall& c) {
  expect_rank(c, 0, 4, "[N,C,H,W]");
  expect_rank(c, 1, 4, "[N,C,h,w]");
  const Shape &x = c.input(0).shape(), &i = c.input(1).shape();
  if (x[0] != i[0] || x[1] != i[1])
    shape_fail(c, "x {} and indices {} must agree on N and C", x, i);
  check_indices(c, 1, x[2] * x[3], x[2], x[3]);
  return std::vector<TensorSpec>{{i, c.input(0).dtype()}};
}

std::vector<Tensor> gather_at_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor y(specs[0].shape, specs[0].dtype);
  dispatch_float(y.dtype(), [&](auto t) { gather<decltype(t)>(c.input(0), c.input(1), y); });
  return std::vector<Tensor>{y};
}

std::vector<Var> gather_at_vjp(const VjpContext& c) {
  const Shape& x = c.input(0).shape();
  return {scatter_add_at(c.grad_output(0), c.input(1), {x[2], x[3]}), Var()};
}

OpSample gather_at_sample(Sampler& s) {
  const Shape x{s.integer(1, 2), s.integer(1, 3), s.integer(1, 4), s.integer(1, 4)};
  const Shape i{x[0], x[1], s.integer(1, 3), s.integer(1, 3)};
  return OpSample{{s.smooth(x), s.indices(i, x[2] * x[3])}, {}, all_batched(2)};
}

OpDef gather_at_def() {
  return {
      .name = "gather_at",
      .summary = "y[n,c,i,j] = x[n,c].flat[indices[n,c,i,j]]",
      .inputs = {{"x"}, {"indices", InputKind::int64}},
      .shape = gather_at_shape,
      .forward = gather_at_kernel,
      .vjp = gather_at_vjp,
      .vjp_formula = "dx = scatter_add_at(g, indices, [H, W])",
      .vjp_reads_outputs = false,
      .jvp = linear_jvp,
      .jvp_formula = "dy = gather_at(tx, indices)",
      .sample = gather_at_sample,
  };
}

// ---- scatter_add_at ---------------------------------------------------------------------------

std::vector<TensorSpec> scatter_add_at_shape(const OpCall& c) {
  expect_rank(c, 0, 4, "[N,C,h,w]");
  expect_same_shape(c, 0, 1);
  const Pair size = c.attrs.pair("output_size");
  if (size.h < 1 || size.w < 1)
    shape_fail(c, "output_size must be positive, got [{},{}]", size.h, size.w);
  check_indices(c, 1, size.h * size.w, size.h, size.w);
  const Shape& x = c.input(0).shape();
  return std::vector<TensorSpec>{{{x[0], x[1], size.h, size.w}, c.input(0).dtype()}};
}

std::vector<Tensor> scatter_add_at_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor y(specs[0].shape, specs[0].dtype);
  dispatch_float(y.dtype(), [&](auto t) { scatter<decltype(t)>(c.input(0), c.input(1), y, true); });
  return std::vector<Tensor>{y};
}

std::vector<Var> scatter_add_at_vjp(const VjpContext& c) {
  return {gather_at(c.grad_output(0), c.input(1)), Var()};
}

OpSample scatter_add_at_sample(Sampler& s) {
  const Shape x{s.integer(1, 2), s.integer(1, 3), s.integer(1, 3), s.integer(1, 3)};
  const int64_t H = s.integer(1, 4), W = s.integer(1, 4);
  return OpSample{
      {s.smooth(x), s.indices(x, H * W)}, {{"output_size", Ints{H, W}}}, all_batched(2)};
}

OpDef scatter_add_at_def() {
  return {
      .name = "scatter_add_at",
      .summary = "y = zeros [N,C,H,W]; y[n,c].flat[indices[n,c,i,j]] += x[n,c,i,j]",
      .inputs = {{"x"}, {"indices", InputKind::int64}},
      .attrs = {{"output_size", AttrType::pair, std::nullopt, "[H, W] of the output planes",
                 "out"}},
      .shape = scatter_add_at_shape,
      .forward = scatter_add_at_kernel,
      .vjp = scatter_add_at_vjp,
      .vjp_formula = "dx = gather_at(g, indices)",
      .vjp_reads_outputs = false,
      .jvp = linear_jvp,
      .jvp_formula = "dy = scatter_add_at(tx, indices)",
      .sample = scatter_add_at_sample,
  };
}

// ---- avg_pool2d -------------------------------------------------------------------------------

std::vector<TensorSpec> avg_pool2d_shape(const OpCall& c) {
  expect_rank(c, 0, 4, "[N,C,H,W]");
  const PoolGeometry g = pool_geometry(c, c.input(0).shape(), false, c.attrs.boolean("ceil_mode"));
  return std::vector<TensorSpec>{{{g.N, g.C, g.h.out, g.w.out}, c.input(0).dtype()}};
}

std::vector<Tensor> avg_pool2d_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const PoolGeometry g = pool_geometry(c, c.input(0).shape(), false, c.attrs.boolean("ceil_mode"));
  Tensor y(specs[0].shape, specs[0].dtype);
  dispatch_float(y.dtype(), [&](auto t) {
    avg_pool_forward<decltype(t)>(c.input(0), g, c.attrs.boolean("count_include_pad"), y);
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> avg_pool2d_vjp(const VjpContext& c) {
  const Shape& x = c.input(0).shape();
  return {avg_pool2d_backward(c.grad_output(0), {x[2], x[3]}, avg_options(c.attrs))};
}

OpSample avg_pool2d_sample(Sampler& s) {
  const SampledPool p = sample_pool_config(s, false);
  return OpSample{{s.smooth(p.x)},
                  {{"kernel_size", p.kernel},
                   {"stride", p.stride},
                   {"padding", p.padding},
                   {"ceil_mode", p.ceil_mode},
                   {"count_include_pad", s.boolean()}},
                  all_batched(1)};
}

OpDef avg_pool2d_def() {
  return {
      .name = "avg_pool2d",
      .summary = "window means (PyTorch's divisor rules for padding and ceil_mode)",
      .inputs = {{"x"}},
      .attrs = avg_attrs(),
      .shape = avg_pool2d_shape,
      .forward = avg_pool2d_kernel,
      .vjp = avg_pool2d_vjp,
      .vjp_formula = "dx = avg_pool2d_backward(g, [H, W])",
      .vjp_reads_outputs = false,
      .jvp = linear_jvp,
      .jvp_formula = "dy = avg_pool2d(tx)",
      .label = pool_label,
      .sample = avg_pool2d_sample,
  };
}

// ---- avg_pool2d_backward ----------------------------------------------------------------------

std::vector<TensorSpec> avg_pool2d_backward_shape(const OpCall& c) {
  expect_rank(c, 0, 4, "[N,C,Ho,Wo]");
  const Pair in = c.attrs.pair("input_size");
  const Shape& g = c.input(0).shape();
  const PoolGeometry geo =
      pool_geometry(c, {g[0], g[1], in.h, in.w}, false, c.attrs.boolean("ceil_mode"));
  if (geo.h.out != g[2] || geo.w.out != g[3])
    shape_fail(c, "g is {} but avg_pool2d of a {}x{} input gives {}x{}", g, in.h, in.w, geo.h.out,
               geo.w.out);
  return std::vector<TensorSpec>{{{g[0], g[1], in.h, in.w}, c.input(0).dtype()}};
}

std::vector<Tensor> avg_pool2d_backward_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor x = Tensor::zeros(specs[0].shape, specs[0].dtype);
  const PoolGeometry g = pool_geometry(c, specs[0].shape, false, c.attrs.boolean("ceil_mode"));
  dispatch_float(x.dtype(), [&](auto t) {
    avg_pool_adjoint<decltype(t)>(c.input(0), g, c.attrs.boolean("count_include_pad"), x);
  });
  return std::vector<Tensor>{x};
}

std::vector<Var> avg_pool2d_backward_vjp(const VjpContext& c) {
  return {avg_pool2d(c.grad_output(0), avg_options(c.attrs))};
}

OpSample avg_pool2d_backward_sample(Sampler& s) {
  const SampledPool p = sample_pool_config(s, false);
  const int64_t Ho =
      pool_out(p.x[2], p.kernel[0], p.stride[0], p.padding.top, p.padding.bottom, 1, p.ceil_mode);
  const int64_t Wo =
      pool_out(p.x[3], p.kernel[1], p.stride[1], p.padding.left, p.padding.right, 1, p.ceil_mode);
  return OpSample{{s.smooth({p.x[0], p.x[1], Ho, Wo})},
                  {{"input_size", Ints{p.x[2], p.x[3]}},
                   {"kernel_size", p.kernel},
                   {"stride", p.stride},
                   {"padding", p.padding},
                   {"ceil_mode", p.ceil_mode},
                   {"count_include_pad", s.boolean()}},
                  all_batched(1)};
}

OpDef avg_pool2d_backward_def() {
  std::vector<AttrSpec> backward_attrs = avg_attrs();
  backward_attrs.insert(backward_attrs.begin(), {"input_size", AttrType::pair, std::nullopt,
                                                 "[H, W] of the pooled input", "in"});

  return {
      .name = "avg_pool2d_backward",
      .summary = "spreads g / divisor over each avg_pool2d window (its adjoint)",
      .inputs = {{"g"}},
      .attrs = backward_attrs,
      .shape = avg_pool2d_backward_shape,
      .forward = avg_pool2d_backward_kernel,
      .vjp = avg_pool2d_backward_vjp,
      .vjp_formula = "dg = avg_pool2d(gg)",
      .vjp_reads_outputs = false,
      .label = pool_label,
      .sample = avg_pool2d_backward_sample,
  };
}

// ---- adaptive_avg_pool2d, adaptive_avg_pool2d_backward -----------------------------------------
// F.adaptive_avg_pool2d: output cell i of an axis of size `out` averages input rows
// [floor(i*in/out), ceil((i+1)*in/out)), so every row is covered and windows may overlap
// (out > in repeats rows). Global average pooling is output_size [1, 1]. The backward op spreads
// each cell's gradient over its window divided by the window's size; the two are each other's
// adjoint, so each is the other's VJP.

struct AdaptiveWindow {
  int64_t begin, end;
};
AdaptiveWindow adaptive_window(int64_t i, int64_t in, int64_t out) {
  return {(i * in) / out, ((i + 1) * in + out - 1) / out};
}

// The pooled [H, W] planes (`x_planes`) and the grid of cells over them (`cells`).
void check_adaptive(const OpCall& c, const Shape& planes, Pair cells) {
  if (cells.h < 1 || cells.w < 1)
    shape_fail(c, "output_size must be at least [1,1], got [{},{}]", cells.h, cells.w);
  if (planes[2] < 1 || planes[3] < 1)
    shape_fail(c, "the pooled planes are {}x{}: there is nothing to average", planes[2], planes[3]);
}

// Calls visit(cell, row window, column window, 1 / window size) for each cell of an Ho x Wo grid
// over an H x W plane.
template <class Visit>
void for_each_adaptive_cell(int64_t H, int64_t W, int64_t Ho, int64_t Wo, Visit visit) {
  for (int64_t i = 0; i < Ho; ++i) {
    const AdaptiveWindow r = adaptive_window(i, H, Ho);
    for (int64_t j = 0; j < Wo; ++j) {
      const AdaptiveWindow q = adaptive_window(j, W, Wo);
      visit(i * Wo + j, r, q, 1.0 / static_cast<double>((r.end - r.begin) * (q.end - q.begin)));
    }
  }
}

// The sum of a window of one H x W plane, vectorised (Eigen): whole rows are one contiguous
// stretch (global pooling sums a plane at once), otherwise row by row.
template <class T>
T window_sum(const T* plane, int64_t W, AdaptiveWindow r, AdaptiveWindow q) {
  using Row = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  if (q.begin == 0 && q.end == W) return Row(plane + r.begin * W, (r.end - r.begin) * W).sum();
  T total = 0;
  for (int64_t h = r.begin; h < r.end; ++h)
    total += Row(plane + h * W + q.begin, q.end - q.begin).sum();
  return total;
}

// y[p, cell] = mean of x[p] over the cell's window, for each of `planes` H x W planes.
template <class T>
void adaptive_mean(const T* x, T* y, int64_t planes, int64_t H, int64_t W, int64_t Ho, int64_t Wo) {
  if (Ho == 1 && Wo == 1) {  // global pooling: the column sums of a [H*W, planes] matrix
    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
    using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;
    const T scale = static_cast<T>(1.0 / static_cast<double>(H * W));
    kernels::parallel_for(planes, H * W, [&](int64_t p0, int64_t p1) {
      Eigen::Map<RowVector>(y + p0, p1 - p0) =
          Eigen::Map<const Matrix>(x + p0 * H * W, H * W, p1 - p0).colwise().sum() * scale;
    });
    return;
  }
  kernels::parallel_for(planes, H * W, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for_each_adaptive_cell(
          H, W, Ho, Wo, [&](int64_t cell, AdaptiveWindow r, AdaptiveWindow q, double scale) {
            y[p * Ho * Wo + cell] = window_sum(x + p * H * W, W, r, q) * static_cast<T>(scale);
          });
  });
}

// x[p, window] += g[p, cell] * scale for every cell: the adjoint of adaptive_mean (x zeroed).
template <class T>
void adaptive_spread(const T* g, T* x, int64_t planes, int64_t H, int64_t W, int64_t Ho,
                     int64_t Wo) {
  if (Ho == 1 && Wo == 1) {  // global pooling: every pixel of plane p gets g[p] / (H*W)
    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
    using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;
    const T scale = static_cast<T>(1.0 / static_cast<double>(H * W));
    kernels::parallel_for(planes, H * W, [&](int64_t p0, int64_t p1) {
      Eigen::Map<Matrix>(x + p0 * H * W, H * W, p1 - p0).rowwise() =
          Eigen::Map<const RowVector>(g + p0, p1 - p0) * scale;
    });
    return;
  }
  kernels::parallel_for(planes, H * W, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for_each_adaptive_cell(H, W, Ho, Wo,
                             [&](int64_t cell, AdaptiveWindow r, AdaptiveWindow q, double scale) {
                               const T share = g[p * Ho * Wo + cell] * static_cast<T>(scale);
                               for (int64_t h = r.begin; h < r.end; ++h)
                                 for (int64_t w = q.begin; w < q.end; ++w)
                                   x[(p * H + h) * W + w] += share;
                             });
  });
}

std::vector<TensorSpec> adaptive_avg_pool2d_shape(const OpCall& c) {
  expect_rank(c, 0, 4, "[N,C,H,W]");
  const Shape& x = c.input(0).shape();
  const Pair out = c.attrs.pair("output_size");
  check_adaptive(c, x, out);
  return {{{x[0], x[1], out.h, out.w}, c.input(0).dtype()}};
}

std::vector<Tensor> adaptive_avg_pool2d_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor& x = c.input(0);
  Tensor y(specs[0].shape, specs[0].dtype);
  const Shape& s = x.shape();
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    adaptive_mean(x.data<T>(), y.data<T>(), s[0] * s[1], s[2], s[3], y.shape()[2], y.shape()[3]);
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> adaptive_avg_pool2d_vjp(const VjpContext& c) {
  const Shape& x = c.input(0).shape();
  return {adaptive_avg_pool2d_backward(c.grad_output(0), {x[2], x[3]})};
}

OpSample adaptive_avg_pool2d_sample(Sampler& s) {
  const Shape x{s.integer(1, 2), s.integer(1, 3), s.integer(1, 6), s.integer(1, 6)};
  // Fewer cells than rows, as many, or more (overlapping windows).
  const Ints out{s.integer(1, x[2] + 1), s.integer(1, x[3] + 1)};
  return OpSample{{s.smooth(x)}, {{"output_size", out}}, all_batched(1)};
}

OpDef adaptive_avg_pool2d_def() {
  return {
      .name = "adaptive_avg_pool2d",
      .summary = "means over an output_size grid of cells covering each plane (global: [1,1])",
      .inputs = {{"x"}},
      .attrs = {{"output_size", AttrType::pair, std::nullopt, "[h, w] of the output planes",
                 "out"}},
      .shape = adaptive_avg_pool2d_shape,
      .forward = adaptive_avg_pool2d_kernel,
      .vjp = adaptive_avg_pool2d_vjp,
      .vjp_formula = "dx = adaptive_avg_pool2d_backward(g, [H, W])",
      .vjp_reads_outputs = false,
      .sample = adaptive_avg_pool2d_sample,
  };
}

std::vector<TensorSpec> adaptive_avg_pool2d_backward_shape(const OpCall& c) {
  expect_rank(c, 0, 4, "[N,C,h,w]");
  const Shape& g = c.input(0).shape();
  const Pair in = c.attrs.pair("input_size");
  check_adaptive(c, {g[0], g[1], in.h, in.w}, {g[2], g[3]});
  return {{{g[0], g[1], in.h, in.w}, c.input(0).dtype()}};
}

std::vector<Tensor> adaptive_avg_pool2d_backward_kernel(const OpCall& c,
                                                        std::span<const TensorSpec> specs) {
  const Tensor& g = c.input(0);
  Tensor x = Tensor::zeros(specs[0].shape, specs[0].dtype);
  const Shape& s = x.shape();
  dispatch_float(x.dtype(), [&](auto t) {
    using T = decltype(t);
    adaptive_spread(g.data<T>(), x.data<T>(), s[0] * s[1], s[2], s[3], g.shape()[2], g.shape()[3]);
  });
  return std::vector<Tensor>{x};
}

std::vector<Var> adaptive_avg_pool2d_backward_vjp(const VjpContext& c) {
  const Shape& g = c.input(0).shape();
  return {adaptive_avg_pool2d(c.grad_output(0), {g[2], g[3]})};
}

OpSample adaptive_avg_pool2d_backward_sample(Sampler& s) {
  const Shape g{s.integer(1, 2), s.integer(1, 3), s.integer(1, 4), s.integer(1, 4)};
  const Ints in{s.integer(1, 6), s.integer(1, 6)};
  return OpSample{{s.smooth(g)}, {{"input_size", in}}, all_batched(1)};
}

OpDef adaptive_avg_pool2d_backward_def() {
  return {
      .name = "adaptive_avg_pool2d_backward",
      .summary = "spreads g / window size over each adaptive_avg_pool2d cell (its adjoint)",
      .inputs = {{"g"}},
      .attrs = {{"input_size", AttrType::pair, std::nullopt, "[H, W] of the pooled input", "in"}},
      .shape = adaptive_avg_pool2d_backward_shape,
      .forward = adaptive_avg_pool2d_backward_kernel,
      .vjp = adaptive_avg_pool2d_backward_vjp,
      .vjp_formula = "dg = adaptive_avg_pool2d(gg, [h, w])",
      .vjp_reads_outputs = false,
      .sample = adaptive_avg_pool2d_backward_sample,
  };
}

}  // namespace

void register_pool_ops() {
  register_builtin(adaptive_avg_pool2d_def());
  register_builtin(adaptive_avg_pool2d_backward_def());
  register_builtin(max_pool2d_def());
  register_builtin(max_unpool2d_def());
  register_builtin(gather_at_def());
  register_builtin(scatter_add_at_def());
  register_builtin(avg_pool2d_def());
  register_builtin(avg_pool2d_backward_def());
}

// ---- typed front --------------------------------------------------------------------------

PoolResult max_pool2d(const Var& x, MaxPool2dOptions o, Loc loc) {
  static const OpDef& op = builtin("max_pool2d");
  Var in[] = {x};
  auto out = call(op, in,
                  Attrs(op, {{"kernel_size", o.kernel_size},
                             {"stride", o.stride},
                             {"padding", o.padding},
                             {"dilation", o.dilation},
                             {"ceil_mode", o.ceil_mode}}),
                  loc);
  return {out[0], out[1]};
}
Var max_unpool2d(const Var& x, const Var& indices, MaxUnpool2dOptions o, Loc loc) {
  static const OpDef& op = builtin("max_unpool2d");
  return call_op(op, {x, indices},
                 Attrs(op, {{"kernel_size", o.kernel_size},
                            {"stride", o.stride},
                            {"padding", o.padding},
                            {"output_size", o.output_size}}),
                 loc);
}
Var gather_at(const Var& x, const Var& indices, Loc loc) {
  static const OpDef& op = builtin("gather_at");
  return call_op(op, {x, indices}, loc);
}
Var scatter_add_at(const Var& x, const Var& indices, Pair output_size, Loc loc) {
  static const OpDef& op = builtin("scatter_add_at");
  return call_op(op, {x, indices}, Attrs(op, {{"output_size", output_size}}), loc);
}
Var avg_pool2d(const Var& x, AvgPool2dOptions o, Loc loc) {
  static const OpDef& op = builtin("avg_pool2d");
  return call_op(op, {x},
                 Attrs(op, {{"kernel_size", o.kernel_size},
                            {"stride", o.stride},
                            {"padding", o.padding},
                            {"ceil_mode", o.ceil_mode},
                            {"count_include_pad", o.count_include_pad}}),
                 loc);
}
Var avg_pool2d_backward(const Var& g, Pair input_size, AvgPool2dOptions o, Loc loc) {
  static const OpDef& op = builtin("avg_pool2d_backward");
  return call_op(op, {g},
                 Attrs(op, {{"input_size", input_size},
                            {"kernel_size", o.kernel_size},
                            {"stride", o.stride},
                            {"padding", o.padding},
                            {"ceil_mode", o.ceil_mode},
                            {"count_include_pad", o.count_include_pad}}),
                 loc);
}

Var adaptive_avg_pool2d(const Var& x, Pair output_size, Loc loc) {
  static const OpDef& op = builtin("adaptive_avg_pool2d");
  return call_op(op, {x}, Attrs(op, {{"output_size", output_size}}), loc);
}
Var adaptive_avg_pool2d_backward(const Var& g, Pair input_size, Loc loc) {
  static const OpDef& op = builtin("adaptive_avg_pool2d_backward");
  return call_op(op, {g}, Attrs(op, {{"input_size", input_size}}), loc);
}

}  // namespace dg
