// Anomaly mode: the first NaN/Inf is blamed on the op that created it, with its call site.
#include <cmath>
#include <limits>

#include "test_util.h"

namespace dg {
namespace {

using test::f64;

std::string anomaly_message(const std::function<void()>& body) {
  try {
    body();
  } catch (const AnomalyError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no AnomalyError was thrown";
  return "";
}

TEST(Anomaly, LogOfANegativeNumberIsBlamedOnLogWithItsCallSite) {
  DetectAnomaly detect;
  Tape tape;
  Var x = variable(f64({1.0, -2.0, 3.0}, {3}), "x");
  const int line = __LINE__ + 1;
  const std::string m = anomaly_message([&] { sum(log(mul_scalar(x, 2.0))); });
  EXPECT_NE(m.find("anomaly: 'log' created 1 NaN and 0 Inf (first at [1])"), std::string::npos)
      << m;
  EXPECT_NE(m.find("forward pass"), std::string::npos) << m;
  EXPECT_NE(m.find(fmt::format("anomaly_test.cpp:{}", line)), std::string::npos) << m;
  EXPECT_NE(m.find("x = float64 [3] values in [-4, 6]"), std::string::npos) << m;
}

TEST(Anomaly, ExpOverflowIsBlamedOnExp) {
  DetectAnomaly detect;
  const std::string m = anomaly_message([] { exp(add_scalar(f64({1.0, 800.0}, {2}), 1.0)); });
  EXPECT_NE(m.find("'exp' created 0 NaN and 1 Inf (first at [1])"), std::string::npos) << m;
}

// Inside a composite, the division that divides by zero is named, not the ops after it.
TEST(Anomaly, DivisionByZeroInsideACompositeIsBlamedOnDiv) {
  DetectAnomaly detect;
  Tape tape;
  Var a = variable(f64({1, 2}, {2})), b = variable(f64({3, 3}, {2}));
  const std::string m = anomaly_message([&] { tanh(relu(div(a, sub(b, b)) * 2.0)); });
  EXPECT_NE(m.find("'div' created 0 NaN and 2 Inf"), std::string::npos) << m;
}

// 1/x at x = 1e-170 is finite (1e170), but its gradient -1/x^2 is not: the backward pass names
// the VJP that created it.
TEST(Anomaly, ANanThatAppearsOnlyInTheBackwardPassNamesTheVjp) {
  DetectAnomaly detect;
  Tape tape;
  Var x = variable(f64({1e-170}, {1}));
  Var y = sum(div(Tensor::ones({1}, DType::f64), x));
  EXPECT_TRUE(std::isfinite(y.item()));
  const std::string m = anomaly_message([&] { grad(y, {x}); });
  EXPECT_NE(m.find("backward pass, inside the VJP of 'div'"), std::string::npos) << m;
  EXPECT_NE(m.find("created 0 NaN and 1 Inf"), std::string::npos) << m;
}

TEST(Anomaly, ANonFiniteLeafIsReportedAsComingFromOutside) {
  DetectAnomaly detect;
  Var x = input(f64({1, std::numeric_limits<double>::quiet_NaN()}, {2}), "pixels");
  const std::string m = anomaly_message([&] { relu(x); });
  EXPECT_NE(m.find("received a non-finite input"), std::string::npos) << m;
  EXPECT_NE(m.find("named 'pixels'"), std::string::npos) << m;
}

TEST(Anomaly, OffByDefaultAndOffAfterTheScope) {
  EXPECT_FALSE(DetectAnomaly::enabled());
  {
    DetectAnomaly detect;
    EXPECT_TRUE(DetectAnomaly::enabled());
  }
  EXPECT_FALSE(DetectAnomaly::enabled());
  Var y = log(f64({-1}, {1}));  // no scope: NaN flows through, no error
  EXPECT_TRUE(std::isnan(y.item()));
}

}  // namespace
}  // namespace dg
