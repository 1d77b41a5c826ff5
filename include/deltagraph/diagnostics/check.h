// deltagraph: gradient checking against central finite differences.
//
//   auto f = [](const std::vector<dg::Var>& in) { return std::vector{dg::tanh(in[0] * in[1])}; };
//   dg::CheckResult r = dg::gradcheck(f, {a, b});
//   if (!r.ok) std::cout << r.report;
//
// The check runs in float64 whatever the inputs' dtype: for a random cotangent v it compares
// the VJP J^T v from the engine with finite differences of <v, f(x)>, element by element
// (full mode, for small inputs) or along random directions u, <J^T v, u> vs (<v,f(x+eps u)> -
// <v,f(x-eps u)>)/(2 eps) (directional mode, for large ones).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "deltagraph/core/tensor.h"
#include "deltagraph/core/var.h"

namespace dg {

using CheckedFunction = std::function<std::vector<Var>(const std::vector<Var>&)>;

struct CheckOptions {
  double eps = 1e-6;   // finite-difference step
  double rtol = 1e-5;  // |analytic - numeric| <= atol + rtol * |numeric|
  double atol = 1e-7;
  // Inputs with at most this many elements in total are checked element by element; larger
  // ones along `directions` random directions.
  int64_t full_limit = 512;
  int directions = 4;
  uint64_t seed = 0;
  // Which inputs to differentiate (empty: every floating input).
  std::vector<bool> wrt = {};
};

struct CheckResult {
  bool ok = true;
  std::string report;      // what failed: input, element, analytic vs numeric, tolerance
  double worst_error = 0;  // largest |analytic - numeric| / (atol + rtol |numeric|)
};

// First order: the VJP of f against finite differences.
CheckResult gradcheck(const CheckedFunction& f, const std::vector<Tensor>& inputs,
                      const CheckOptions& options = {});
// Second order: the VJP of (x, v) -> J(x)^T v, recorded with create_graph, against finite
// differences of that function.
CheckResult gradgradcheck(const CheckedFunction& f, const std::vector<Tensor>& inputs,
                          const CheckOptions& options = {});
// The float32 VJP of f against its float64 VJP (same inputs and cotangent), with float32
// tolerances: float32 results are checked against float64 as the oracle, never against finite
// differences in float32, which fail falsely.
CheckResult check_float32(const CheckedFunction& f, const std::vector<Tensor>& inputs,
                          double rtol = 1e-3, double atol = 1e-4, uint64_t seed = 0);

}  // namespace dg
