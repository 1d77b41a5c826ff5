// The README's code, compiled and run, so the documentation cannot drift from the library.
#include <deltagraph/testing.h>
#include <gtest/gtest.h>

#include "deltagraph/deltagraph.h"

namespace {

TEST(Readme, PropertyTestForYourOwnOp) {
  const dg::OpDef& cube = dg::register_op({
      .name = "readme_cube",
      .inputs = {{"x"}},
      .shape = [](const dg::OpCall& c) { return dg::same_as_input(c); },
      .forward =
          [](const dg::OpCall& c, std::span<const dg::TensorSpec>) {
            return std::vector<dg::Tensor>{(dg::Var(c.input(0)) * c.input(0) * c.input(0)).value()};
          },
      .vjp = [](const dg::VjpContext& c) -> std::vector<dg::Var> {
        return {c.grad_output(0) * (3.0 * c.input(0) * c.input(0))};  // dx = 3 x^2 g
      },
      .sample =
          [](dg::Sampler& s) {
            return dg::OpSample{{s.smooth(dg::sample_shape(s, 0, 3))}, {}};
          },
  });
  dg::PropertyOptions options;
  options.seed = 1;
  int checked = 0;
  for (const dg::PropertyResult& r : dg::check_op_properties(cube, options)) {
    EXPECT_TRUE(r.ok) << r.report;
    checked += !r.skipped;
  }
  EXPECT_EQ(checked, 3);  // vjp, vjp_of_vjp, float32
}

TEST(Readme, SecondDerivativeOfACube) {
  dg::Param x(dg::Tensor::scalar(2.0, dg::DType::f64));
  dg::Tape tape;
  dg::Var y = x * x * x;
  dg::Var dy = dg::grad(y, {x}, {.create_graph = true})[0];  // 3x^2 = 12, differentiable
  dg::Var d2y = dg::grad(dy, {x})[0];                        // 6x = 12
  EXPECT_DOUBLE_EQ(dy.item(), 12.0);
  EXPECT_DOUBLE_EQ(d2y.item(), 12.0);
}

}  // namespace
