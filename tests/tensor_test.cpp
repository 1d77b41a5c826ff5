#include <gtest/gtest.h>

#include "deltagraph/deltagraph.h"

TEST(Tensor, Placeholder) { EXPECT_EQ(dg::Tensor::zeros({2, 3}).numel(), 6); }
