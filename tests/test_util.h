// Helpers shared by the deltagraph tests, in namespace dg::test (tests inside namespace dg write
// test::f64, the others dg::test::f64 or a using-declaration).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "deltagraph/deltagraph.h"

// Readable shapes in gtest failure messages.
namespace dg {
inline void PrintTo(const Shape& dims, std::ostream* os) { *os << to_string(dims); }
}  // namespace dg

namespace dg::test {

// A float64 tensor from values (row-major) and a shape.
inline dg::Tensor f64(std::vector<double> values, const dg::Shape& shape) {
  return dg::Tensor::from(values, shape);
}
inline dg::Tensor f32(std::vector<float> values, const dg::Shape& shape) {
  return dg::Tensor::from(values, shape);
}

// Random float64 values with |x| in [0.2, 1.2] (away from the kinks at 0), reproducible.
inline dg::Tensor away_from_zero(const dg::Shape& shape, uint64_t seed) {
  dg::Tensor t = dg::Tensor::uniform(shape, seed, dg::DType::f64, 0.2, 1.2);
  dg::Tensor sign = dg::Tensor::uniform(shape, seed + 1000, dg::DType::f64, -1, 1);
  double* p = t.data<double>();
  const double* s = sign.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = s[i] < 0 ? -p[i] : p[i];
  return t;
}

// Random float64 values in [low, high], reproducible.
inline dg::Tensor rand64(const dg::Shape& shape, uint64_t seed, double low = -1, double high = 1) {
  return dg::Tensor::uniform(shape, seed, dg::DType::f64, low, high);
}

// Passes when the message of the dg::Error thrown by f contains every one of `parts`.
inline ::testing::AssertionResult ThrowsError(const std::function<void()>& f,
                                              std::initializer_list<std::string> parts) {
  std::string message;
  try {
    f();
    return ::testing::AssertionFailure() << "no exception was thrown";
  } catch (const dg::Error& e) {
    message = e.what();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "a non-dg::Error exception was thrown: " << e.what();
  }
  for (const std::string& part : parts)
    if (message.find(part) == std::string::npos)
      return ::testing::AssertionFailure()
             << "the message \"" << message << "\" does not contain \"" << part << "\"";
  return ::testing::AssertionSuccess() << message;
}

// Passes when f throws a dg::Error whose message is exactly `expected`.
inline ::testing::AssertionResult ThrowsExactly(const std::function<void()>& f,
                                                const std::string& expected) {
  try {
    f();
    return ::testing::AssertionFailure() << "no exception was thrown";
  } catch (const dg::Error& e) {
    if (expected == e.what()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "message \"" << e.what() << "\"\n  expected \"" << expected << "\"";
  }
}

// Passes when f throws dg::Error whose message is exactly `head`, a call site "file.cpp:LINE",
// then `tail`: ThrowsExactly(f, "conv2d at ", ": x has 3 channels ...").
inline ::testing::AssertionResult ThrowsExactly(const std::function<void()>& f,
                                                const std::string& head, const std::string& tail) {
  try {
    f();
    return ::testing::AssertionFailure() << "no exception was thrown";
  } catch (const dg::Error& e) {
    const std::string what = e.what();
    const bool framed =
        what.size() > head.size() + tail.size() && what.starts_with(head) && what.ends_with(tail);
    if (framed) {
      const std::string site = what.substr(head.size(), what.size() - head.size() - tail.size());
      const size_t colon = site.rfind(':');
      const bool numbered = colon != std::string::npos && colon + 1 < site.size() &&
                            site.find_first_not_of("0123456789", colon + 1) == std::string::npos;
      if (numbered && site.find(".cpp") != std::string::npos) return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "message \"" << what << "\"\n  expected \"" << head
                                         << "<file.cpp:line>" << tail << "\"";
  }
}

inline ::testing::AssertionResult Passed(const dg::CheckResult& r) {
  if (r.ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << r.report;
}

// Element-wise comparison of a tensor with expected values and shape.
inline ::testing::AssertionResult ValuesNear(const dg::Tensor& t, const dg::Shape& shape,
                                             const std::vector<double>& expected,
                                             double tol = 1e-12) {
  if (!(t.shape() == shape))
    return ::testing::AssertionFailure()
           << "shape " << dg::to_string(t.shape()) << ", expected " << dg::to_string(shape);
  if (t.numel() != static_cast<int64_t>(expected.size()))
    return ::testing::AssertionFailure() << t.numel() << " elements, expected " << expected.size();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double a = t.at(i), e = expected[i];
    if (!(std::abs(a - e) <= tol * (1 + std::abs(e))))
      return ::testing::AssertionFailure()
             << "element " << i << " is " << a << ", expected " << e << "\n"
             << dg::to_string(t);
  }
  return ::testing::AssertionSuccess();
}
inline ::testing::AssertionResult ValuesNear(const dg::Var& v, const dg::Shape& shape,
                                             const std::vector<double>& expected,
                                             double tol = 1e-12) {
  return ValuesNear(v.value(), shape, expected, tol);
}

// gradcheck + gradgradcheck (when second_order) + float32-vs-float64 of f at `inputs`, as one
// result: ok when every check passed, the report of those that did not. expect_gradients_ok in
// gtest tests; in a RapidCheck property, `if (!r.ok) RC_FAIL(r.report)` (which then shrinks).
inline dg::CheckResult gradient_checks(const dg::CheckedFunction& f,
                                       const std::vector<dg::Tensor>& inputs,
                                       bool second_order = true, dg::CheckOptions options = {}) {
  dg::CheckResult all;
  auto add = [&](const char* name, const dg::CheckResult& r) {
    if (r.ok) return;
    all.ok = false;
    all.report += std::string(all.report.empty() ? "" : "\n") + name + ": " + r.report;
  };
  add("gradcheck", dg::gradcheck(f, inputs, options));
  if (second_order) add("gradgradcheck", dg::gradgradcheck(f, inputs, options));
  add("check_float32", dg::check_float32(f, inputs));
  return all;
}

// gradcheck + gradgradcheck + float32-vs-float64 of f at `inputs` (gradient_checks), as a test
// expectation. Where several run in one test, name each with SCOPED_TRACE at the call site.
inline void expect_gradients_ok(const dg::CheckedFunction& f, const std::vector<dg::Tensor>& inputs,
                                bool second_order = true, dg::CheckOptions options = {}) {
  EXPECT_TRUE(Passed(gradient_checks(f, inputs, second_order, options)));
}

using Fn = dg::CheckedFunction;
using Vars = std::vector<dg::Var>;

}  // namespace dg::test
