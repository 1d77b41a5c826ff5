// SmallVector, the inline-storage vector that node inputs, outputs and attributes live in.
#include <gtest/gtest.h>

#include <memory>
#include <span>
#include <string>

#include "deltagraph/core/small_vector.h"

namespace {

using Strings = dg::SmallVector<std::string, 2>;

TEST(SmallVector, GrowsPastItsInlineStorageAndKeepsOrder) {
  Strings v;
  const std::string long_text(100, 'x');  // heap-allocated strings: moves must carry them
  for (int i = 0; i < 10; ++i) v.push_back(long_text + std::to_string(i));
  ASSERT_EQ(v.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(v[i], long_text + std::to_string(i));
  std::span<const std::string> s = v;  // contiguous
  EXPECT_EQ(s.back(), long_text + "9");
}

TEST(SmallVector, PushingAnOwnElementWhileGrowingCopiesALiveValue) {
  Strings v{"a", "b"};
  v.push_back(v[0]);  // full: the buffer moves while v[0] is read
  v.push_back(v[2]);
  EXPECT_EQ(v.size(), 4u);
  EXPECT_EQ(v[2], "a");
  EXPECT_EQ(v[3], "a");
}

TEST(SmallVector, CopiesAndMovesInlineAndHeapContents) {
  for (size_t n : {1u, 2u, 5u}) {
    Strings v;
    for (size_t i = 0; i < n; ++i) v.push_back(std::string(40, static_cast<char>('a' + i)));
    Strings copy = v;
    EXPECT_EQ(copy.size(), n);
    Strings moved = std::move(v);
    EXPECT_EQ(moved.size(), n);
    EXPECT_TRUE(v.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(moved[i], copy[i]);
    Strings assigned{"z"};
    assigned = copy;
    EXPECT_EQ(assigned.size(), n);
    assigned = std::move(moved);
    EXPECT_EQ(assigned.size(), n);
    assigned.resize(1);
    EXPECT_EQ(assigned.size(), 1u);
    assigned.clear();
    EXPECT_TRUE(assigned.empty());
  }
}

TEST(SmallVector, DestroysEveryElement) {
  auto counter = std::make_shared<int>(0);
  {
    dg::SmallVector<std::shared_ptr<int>, 3> v;
    for (int i = 0; i < 7; ++i) v.push_back(counter);
    EXPECT_EQ(counter.use_count(), 8);
    v.pop_back();
    EXPECT_EQ(counter.use_count(), 7);
  }
  EXPECT_EQ(counter.use_count(), 1);
}

}  // namespace
