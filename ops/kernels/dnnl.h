// Whether oneDNN runs deltagraph's float32 kernels (convolutions: dnnl_conv.h; matrix products:
// gemm.h). Set DG_DNNL=0 in the environment to compare with the portable kernels.
#pragma once

namespace dg::kernels {

bool dnnl_enabled();

}  // namespace dg::kernels
