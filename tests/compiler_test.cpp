// Guards against the GCC 12.2 AVX-512 SLP miscompilation that the build works around
// (CMakeLists.txt): default-initialised option structs must hold their declared defaults.
#include <gtest/gtest.h>

#include "deltagraph/ops/ops.h"

namespace {

__attribute__((noinline)) dg::Conv2dOptions pass_through(dg::Conv2dOptions o) { return o; }

TEST(Compiler, DefaultOptionStructsKeepTheirDefaults) {
  dg::Conv2dOptions o = pass_through({});
  EXPECT_EQ(o.stride, dg::Pair(1, 1));
  EXPECT_EQ(o.padding, dg::Padding(0));
  EXPECT_EQ(o.dilation, dg::Pair(1, 1));
  EXPECT_EQ(o.groups, 1);
  dg::ConvTranspose2dOptions t = {};
  EXPECT_EQ(t.padding, dg::Padding(0));
  EXPECT_EQ(t.output_padding, dg::Pair(0, 0));
}

}  // namespace
