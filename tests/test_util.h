// Helpers shared by the tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "deltagraph/deltagraph.h"

namespace dg::test {

inline Tensor f64(std::vector<double> values, Shape shape) { return Tensor::from(values, shape); }

inline void expect_values(const Tensor& t, const std::vector<double>& expected, double tol = 1e-12) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(expected.size())) << to_string(t);
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_NEAR(t.at(static_cast<int64_t>(i)), expected[i], tol) << "element " << i << " of " << to_string(t);
}

// Asserts that `body` throws dg::Error whose message contains `needle`.
template <class F>
void expect_error(F&& body, const std::string& needle) {
  try {
    body();
    ADD_FAILURE() << "expected a dg::Error containing: " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

// gradcheck + gradgradcheck + float32-vs-float64 of f at `inputs`.
inline void expect_gradients_ok(const CheckedFunction& f, const std::vector<Tensor>& inputs,
                                bool second_order = true, CheckOptions options = {}) {
  CheckResult first = gradcheck(f, inputs, options);
  EXPECT_TRUE(first.ok) << first.report;
  if (second_order) {
    CheckResult second = gradgradcheck(f, inputs, options);
    EXPECT_TRUE(second.ok) << second.report;
  }
  CheckResult f32 = check_float32(f, inputs);
  EXPECT_TRUE(f32.ok) << f32.report;
}

}  // namespace dg::test
