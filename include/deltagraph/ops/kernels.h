// deltagraph: choices between kernels that compute the same thing by different algorithms.
#pragma once

namespace dg {

// Winograd F(4x4, 3x3) for float32 convolutions (conv2d forward, its input and weight
// gradients) with 3x3 windows, stride 1, no dilation, one group and at least 16 channels in
// and out. It does about a quarter of the direct algorithm's multiplications: 2-2.3x faster on
// those convolutions, with a larger rounding error (about 1.7e-6 of the output's largest
// magnitude instead of 3.6e-7; float64 never uses it). On by default; set_winograd(false), or
// DG_WINOGRAD=0 in the environment, gives the direct algorithm, as PyTorch's default does.
// Its tile transforms also leave rounding noise (about 1e-7 of the largest value) on outputs
// whose window sees only zeros, where the direct algorithm gives exact zeros: code that relies
// on exact zeros turns it off (the DeconvNet example, whose receptive-field check is exact).
// Takes effect for the convolutions run after the call, on every thread.
void set_winograd(bool enabled);
bool winograd_enabled();
// Whether this CPU and oneDNN build run Winograd at all (oneDNN 2.6: AVX-512); where they do
// not, the convolutions it would take run the direct algorithm.
bool winograd_supported();

}  // namespace dg
