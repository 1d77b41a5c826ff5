// float32 convolutions on oneDNN's JIT kernels.
//
// oneDNN is fast only in its own blocked layouts (nChw16c, OIhw16i16o, ...); handed plain NCHW
// it falls back to im2col + GEMM, no better than ours. So every call reorders the caller's NCHW
// buffers into the layout the primitive asks for and the result back: the reorders are
// memory-bound (~0.25 ms for 6 MB on two cores), the convolution itself runs at about twice
// the speed of im2col + Eigen. 3x3 stride-1 convolutions with >= 16 channels in and out use
// the Winograd algorithm unless dg::set_winograd(false) (deltagraph/ops/kernels.h). The primitives
// are built once per geometry, algorithm and thread.
//
// Each function returns false (having written nothing) when oneDNN cannot take the problem,
// or when DG_DNNL=0 is set in the environment; the caller then runs its portable kernel. The
// result is given as a function returning the caller's buffer: it is called once, as late as
// the reorders allow (after the blocked inputs are given back), so the caller can allocate the
// result only then.
#pragma once

#include <cstdint>
#include <functional>

namespace dg::kernels {

// The geometry of one conv2d seen forwards: src [N, C, H, W], weights [O, C/G, kH, kW] (as
// [G, O/G, C/G, kH, kW]), dst [N, O, Ho, Wo]. Padding pt rows at the top, pb at the bottom, pl
// columns at the left and pr at the right; the bottom/right rows that the floor in
// Ho = (H + pt + pb - d(k-1) - 1)/s + 1 skips are allowed.
struct DnnlConvProblem {
  int64_t N, C, H, W, O, kH, kW, Ho, Wo;
  int64_t sh, sw, pt, pb, pl, pr, dh, dw, groups;
};

// dst = conv2d(src, weights) + bias (bias may be null).
bool dnnl_conv_forward(const DnnlConvProblem& p, const float* src, const float* weights,
                       const float* bias, const std::function<float*()>& dst);
// diff_src = conv2d's input gradient for diff_dst: conv_transpose2d(diff_dst, weights).
bool dnnl_conv_backward_data(const DnnlConvProblem& p, const float* diff_dst, const float* weights,
                             const std::function<float*()>& diff_src);
// diff_weights = conv2d's weight gradient for src and diff_dst (summed over the batch).
bool dnnl_conv_backward_weights(const DnnlConvProblem& p, const float* src, const float* diff_dst,
                                const std::function<float*()>& diff_weights);

}  // namespace dg::kernels
