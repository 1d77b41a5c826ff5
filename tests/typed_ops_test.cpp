// Every typed op function (dg::conv2d, dg::max_pool2d, ...) against the generic call by name
// with the same inputs and attributes, over each op's own random samples. How each op's typed
// function is called is listed by its family's test file (typed_calls.h). The typed functions
// build their attributes by name, checked against the schema; this test is what shows that
// each one hands its options to the right attributes (two swapped pairs would differ here).
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <functional>
#include <map>

#include "deltagraph/testing/properties.h"
#include "test_util.h"
#include "typed_calls.h"

namespace dg {
namespace {

using Vars = std::vector<Var>;

std::vector<std::string> builtin_op_names() {
  std::vector<std::string> names;
  for (const OpDef* op : ops())
    if (op->builtin) names.push_back(op->name);
  return names;
}

class TypedFunctions : public ::testing::TestWithParam<std::string> {};

TEST_P(TypedFunctions, GiveWhatTheCallByNameGives) {
  const OpDef& op = find_op(GetParam());
  auto entry = test::typed_calls().find(op.name);
  ASSERT_NE(entry, test::typed_calls().end())
      << op.name << ": its family's test file does not say how its typed function is called "
      << "(dg::test::list_typed_calls in tests/ops/<family>_test.cpp)";
  const test::TypedCall& typed = entry->second;
  int compared = 0;
  const auto result = rc::check(op.name + " typed vs by name", [&] {
    const OpSample sample = *gen::op_sample(op);
    const Vars in(sample.inputs.begin(), sample.inputs.end());
    const Attrs attrs = make_attrs(op, sample.attrs);
    Vars by_name;
    try {
      by_name = call(op, in, attrs);
    } catch (const ShapeError&) {
      RC_DISCARD("the op rejects this sample");
    }
    const Vars by_type = typed(in, attrs);
    RC_ASSERT(by_type.size() == by_name.size());
    for (size_t k = 0; k < by_name.size(); ++k) {
      RC_ASSERT(by_type[k].shape() == by_name[k].shape());
      RC_ASSERT(by_type[k].dtype() == by_name[k].dtype());
      RC_ASSERT(by_type[k].value().to_vector() == by_name[k].value().to_vector());
    }
    ++compared;
  });
  EXPECT_TRUE(result) << op.name;
  EXPECT_GE(compared, 5) << op.name << ": too few samples were compared";
}

INSTANTIATE_TEST_SUITE_P(EveryBuiltinOp, TypedFunctions, ::testing::ValuesIn(builtin_op_names()),
                         [](const auto& info) { return info.param; });

// The lists name no op the registry lacks (a renamed op would leave a stale entry behind).
TEST(TypedFunctions, ListNamesOnlyRegisteredOps) {
  for (const auto& [name, typed] : test::typed_calls())
    EXPECT_NO_THROW((void)find_op(name)) << name;
}

}  // namespace
}  // namespace dg
