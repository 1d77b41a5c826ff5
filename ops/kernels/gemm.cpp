#include "kernels/gemm.h"

#include <oneapi/dnnl/dnnl.h>
#include <Eigen/Core>
#include <type_traits>
#include <vector>

#include "kernels/dnnl.h"

namespace dg::kernels {

template <class T>
void gemm(bool transpose_a, bool transpose_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ConstMap = Eigen::Map<const Matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
  using Map = Eigen::Map<Matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
  Map c(C, M, N, Eigen::OuterStride<>(ldc));
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (beta == T(0)) c.setZero();
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    // oneDNN's sgemm (row-major, JIT for this CPU) beats Eigen's by ~1.5x on the shapes of
    // linear layers and pointwise convolutions (bench_ops / bench_train; DG_DNNL=0 compares).
    if (dnnl_enabled()) {
      // A linear layer's forward, x [M, K] times w^T, where oneDNN's kernel is slow: few rows
      // M (64 x 1024 x 3136 on 2 threads: 2.8 ms, 149 GFLOP/s), or fewer than 16 outputs N
      // (a classifier's last layer; 32 x 10 x 784 on 1 thread: 15 us). Computed the other way
      // round, C^T = w x^T, these take 2.1 ms and 5.8 us; the transpose back (which also
      // applies beta, as when a bias is already in C) is small. Other shapes measured either
      // way (e.g. 1024 x 64 x 3136, 256^3) are faster as they are.
      const bool few_rows = M * 8 <= N && K >= 256, few_outputs = N < 16 && M > N;
      if (!transpose_a && transpose_b && (few_rows || few_outputs)) {
        std::vector<float> ct(static_cast<size_t>(N * M));
        if (dnnl_sgemm('N', 'T', N, M, K, alpha, B, ldb, A, lda, 0.f, ct.data(), M) ==
            dnnl_success) {
          for (int64_t i = 0; i < M; ++i) {
            float* row = C + i * ldc;
            if (beta == 0.f)  // C may hold garbage (NaN) that beta * C must not propagate
              for (int64_t j = 0; j < N; ++j) row[j] = ct[j * M + i];
            else
              for (int64_t j = 0; j < N; ++j) row[j] = ct[j * M + i] + beta * row[j];
          }
          return;
        }
      }
      if (dnnl_sgemm(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', M, N, K, alpha, A, lda, B,
                     ldb, beta, C, ldc) == dnnl_success)
        return;
    }
  }
  ConstMap a(A, transpose_a ? K : M, transpose_a ? M : K, Eigen::OuterStride<>(lda));
  ConstMap b(B, transpose_b ? N : K, transpose_b ? K : N, Eigen::OuterStride<>(ldb));
  auto run = [&](const auto& lhs, const auto& rhs) {
    if (beta == T(0))
      c.noalias() = alpha * (lhs * rhs);
    else
      c.noalias() += alpha * (lhs * rhs);
  };
  if (!transpose_a && !transpose_b)
    run(a, b);
  else if (!transpose_a)
    run(a, b.transpose());
  else if (!transpose_b)
    run(a.transpose(), b);
  else
    run(a.transpose(), b.transpose());
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace dg::kernels
