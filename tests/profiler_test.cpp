// The op profiler: every op run while it is open is counted under its op and pass.
#include <algorithm>

#include "test_util.h"

namespace dg {
namespace {

using test::f64;

const OpTiming* find(const std::vector<OpTiming>& rows, const std::string& op,
                     const std::string& vjp_of, bool backward) {
  auto it = std::find_if(rows.begin(), rows.end(), [&](const OpTiming& t) {
    return t.op == op && t.vjp_of == vjp_of && t.backward == backward;
  });
  return it == rows.end() ? nullptr : &*it;
}

TEST(Profiler, CountsForwardOpsAndTheOpsEachVjpRunsApart) {
  EXPECT_FALSE(Profiler::active());
  Profiler profiler;
  EXPECT_TRUE(Profiler::active());
  Tape tape;
  Var x = variable(test::rand64({2, 3, 6, 6}, 1), "x");
  Var w = variable(test::rand64({4, 3, 3, 3}, 2), "w");
  for (int step = 0; step < 3; ++step) backward(sum(relu(conv2d(x, w))));
  const std::vector<OpTiming> rows = profiler.timings();

  const OpTiming* conv = find(rows, "conv2d", "", false);
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(conv->calls, 3);
  ASSERT_NE(find(rows, "relu", "", false), nullptr);
  EXPECT_EQ(find(rows, "relu", "", false)->calls, 3);
  // conv2d's VJP: the weight gradient and the input gradient, counted as its backward.
  const OpTiming* dw = find(rows, "conv2d_weight_grad", "conv2d", true);
  ASSERT_NE(dw, nullptr);
  EXPECT_EQ(dw->calls, 3);
  ASSERT_NE(find(rows, "conv_transpose2d", "conv2d", true), nullptr);
  ASSERT_NE(find(rows, "relu_backward", "relu", true), nullptr);
  EXPECT_EQ(find(rows, "conv2d_weight_grad", "", false), nullptr);  // never run as a forward op

  // The most expensive first; every time is positive and their sum fits in the wall time.
  double sum_ms = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_GT(rows[i].total_ms, 0) << rows[i].op;
    if (i > 0) {
      EXPECT_GE(rows[i - 1].total_ms, rows[i].total_ms);
    }
    sum_ms += rows[i].total_ms;
  }
  EXPECT_LE(sum_ms, profiler.elapsed_ms());

  const std::string table = profiler.table();
  EXPECT_NE(table.find("conv2d_weight_grad"), std::string::npos) << table;
  EXPECT_NE(table.find("backward of conv2d"), std::string::npos) << table;
  EXPECT_NE(table.find("the rest is outside ops"), std::string::npos) << table;
}

TEST(Profiler, NestedProfilersSeeTheirOwnScopeAndTheOuterOneSeesAll) {
  Profiler outer;
  exp(f64({1.0, 2.0}, {2}));
  {
    Profiler inner;
    exp(f64({1.0}, {1}));
    log(f64({1.0}, {1}));
    const auto rows = inner.timings();
    ASSERT_NE(find(rows, "exp", "", false), nullptr);
    EXPECT_EQ(find(rows, "exp", "", false)->calls, 1);
    EXPECT_NE(find(rows, "log", "", false), nullptr);
  }
  EXPECT_TRUE(Profiler::active());  // the outer one is still open
  const auto rows = outer.timings();
  ASSERT_NE(find(rows, "exp", "", false), nullptr);
  EXPECT_EQ(find(rows, "exp", "", false)->calls, 2);
  EXPECT_NE(find(rows, "log", "", false), nullptr);
}

TEST(Profiler, TheEnginesSumOfContributionsIsItsOwnBackwardRow) {
  Profiler profiler;
  Tape tape;
  Var x = variable(f64({1.0, 2.0}, {2}), "x");
  // x feeds two ops: the engine adds their two gradient contributions.
  backward(sum(add(exp(x), log(x))));
  const auto rows = profiler.timings();
  bool engine_row = std::any_of(rows.begin(), rows.end(),
                                [](const OpTiming& t) { return t.backward && t.vjp_of.empty(); });
  EXPECT_TRUE(engine_row) << profiler.table();
  EXPECT_NE(profiler.table().find("backward (sums)"), std::string::npos);
}

TEST(Profiler, AnOpThatFailsItsShapeRuleIsNotCounted) {
  Profiler profiler;
  EXPECT_THROW(matmul(f64({1, 2}, {1, 2}), f64({1, 2, 3}, {3, 1})), Error);
  EXPECT_TRUE(profiler.timings().empty());
}

}  // namespace
}  // namespace dg
