// Matrix product on row-major buffers, the workhorse of matmul, linear and the convolutions.
// Implemented with Eigen in gemm.cpp (kept out of headers: Eigen is heavy to compile).
#pragma once

#include <cstdint>

namespace dg::kernels {

// C = alpha * op(A) * op(B) + beta * C, all row-major. op(A) is M x K: A is stored M x K
// (lda >= K), or K x M if transpose_a (lda >= M); likewise op(B) is K x N. beta is 0 or 1.
// Uses the OpenMP threads when called outside a parallel region.
template <class T>
void gemm(bool transpose_a, bool transpose_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace dg::kernels
