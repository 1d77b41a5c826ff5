// A parallel loop over [0, n) that stays serial when the work is too small to split.
#pragma once

#include <omp.h>

#include <cstdint>

namespace dg::kernels {

// Runs body(begin, end) over contiguous chunks of [0, n), one per thread; `cost` is the rough
// work per index (elements touched), so small loops skip the thread start-up.
template <class Body>
void parallel_for(int64_t n, int64_t cost, Body&& body) {
  const bool split =
      n > 1 && n * cost >= (int64_t{1} << 15) && !omp_in_parallel() && omp_get_max_threads() > 1;
  if (!split) {
    if (n > 0) body(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads();
    const int64_t t = omp_get_thread_num();
    const int64_t chunk = (n + threads - 1) / threads;
    const int64_t begin = t * chunk;
    const int64_t end = begin + chunk < n ? begin + chunk : n;
    if (begin < end) body(begin, end);
  }
}

}  // namespace dg::kernels
