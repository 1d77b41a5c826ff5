// deltagraph: how many threads kernels use.
#pragma once

namespace dg {

// Threads used by kernels (default: all cores, or OMP_NUM_THREADS). n <= 0 restores the default.
void set_num_threads(int n);
int num_threads();

}  // namespace dg
