// Thread count for kernels: one OpenMP pool, shared with Eigen's GEMM.
#include "deltagraph/core/parallel.h"

#include <omp.h>

namespace dg {

namespace {
int default_threads() {
  static const int n = omp_get_max_threads();
  return n;
}
}  // namespace

void set_num_threads(int n) {
  const int fallback = default_threads();  // read before the first change
  omp_set_num_threads(n > 0 ? n : fallback);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace dg
