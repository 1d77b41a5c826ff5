// Every typed op function (dg::conv2d, dg::max_pool2d, ...) against the generic call by name
// with the same inputs and attributes, over each op's own random samples. The typed functions
// build their attributes by name, checked against the schema; this test is what shows that
// each one hands its options to the right attributes (two swapped pairs would differ here).
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <functional>
#include <map>

#include "deltagraph/testing/properties.h"
#include "test_util.h"

namespace dg {
namespace {

using Vars = std::vector<Var>;
using Typed = std::function<Vars(const Vars& in, const Attrs& a)>;

Conv2dOptions conv2d_options(const Attrs& a) {
  return {.stride = a.pair("stride"),
          .padding = a.pair("padding"),
          .dilation = a.pair("dilation"),
          .groups = a.integer("groups")};
}
ConvTranspose2dOptions conv_transpose2d_options(const Attrs& a) {
  return {.stride = a.pair("stride"),
          .padding = a.pair("padding"),
          .output_padding = a.pair("output_padding"),
          .dilation = a.pair("dilation"),
          .groups = a.integer("groups")};
}
AvgPool2dOptions avg_pool2d_options(const Attrs& a) {
  return {.kernel_size = a.pair("kernel_size"),
          .stride = a.pair("stride"),
          .padding = a.pair("padding"),
          .ceil_mode = a.boolean("ceil_mode"),
          .count_include_pad = a.boolean("count_include_pad")};
}
ReduceOptions reduce_options(const Attrs& a) {
  return {.axes = a.ints("axes"), .keepdims = a.boolean("keepdims")};
}
// The typed overloads with and without the optional third input (a bias).
template <class F>
Vars with_optional_bias(const Vars& in, F&& f) {
  return {in.size() > 2 ? f(in[0], in[1], &in[2]) : f(in[0], in[1], nullptr)};
}

// How each built-in op is called through its typed function.
const std::map<std::string, Typed>& typed_functions() {
  static const std::map<std::string, Typed> table = {
      {"add", [](const Vars& in, const Attrs&) { return Vars{add(in[0], in[1])}; }},
      {"sub", [](const Vars& in, const Attrs&) { return Vars{sub(in[0], in[1])}; }},
      {"mul", [](const Vars& in, const Attrs&) { return Vars{mul(in[0], in[1])}; }},
      {"div", [](const Vars& in, const Attrs&) { return Vars{div(in[0], in[1])}; }},
      {"neg", [](const Vars& in, const Attrs&) { return Vars{neg(in[0])}; }},
      {"exp", [](const Vars& in, const Attrs&) { return Vars{exp(in[0])}; }},
      {"log", [](const Vars& in, const Attrs&) { return Vars{log(in[0])}; }},
      {"relu", [](const Vars& in, const Attrs&) { return Vars{relu(in[0])}; }},
      {"sigmoid", [](const Vars& in, const Attrs&) { return Vars{sigmoid(in[0])}; }},
      {"tanh", [](const Vars& in, const Attrs&) { return Vars{tanh(in[0])}; }},
      {"relu_backward",
       [](const Vars& in, const Attrs&) { return Vars{relu_backward(in[0], in[1])}; }},
      {"add_scalar",
       [](const Vars& in, const Attrs& a) { return Vars{add_scalar(in[0], a.real("c"))}; }},
      {"mul_scalar",
       [](const Vars& in, const Attrs& a) { return Vars{mul_scalar(in[0], a.real("c"))}; }},
      {"elu", [](const Vars& in, const Attrs& a) { return Vars{elu(in[0], a.real("alpha"))}; }},
      {"elu_grad",
       [](const Vars& in, const Attrs& a) { return Vars{elu_grad(in[0], a.real("alpha"))}; }},
      {"broadcast_to",
       [](const Vars& in, const Attrs& a) { return Vars{broadcast_to(in[0], a.ints("shape"))}; }},
      {"sum_to",
       [](const Vars& in, const Attrs& a) { return Vars{sum_to(in[0], a.ints("shape"))}; }},
      {"matmul",
       [](const Vars& in, const Attrs& a) {
         return Vars{matmul(
             in[0], in[1],
             {.transpose_a = a.boolean("transpose_a"), .transpose_b = a.boolean("transpose_b")})};
       }},
      {"linear",
       [](const Vars& in, const Attrs&) {
         return with_optional_bias(in, [](const Var& x, const Var& w, const Var* b) {
           return b ? linear(x, w, *b) : linear(x, w);
         });
       }},
      {"reshape",
       [](const Vars& in, const Attrs& a) { return Vars{reshape(in[0], a.ints("shape"))}; }},
      {"flatten", [](const Vars& in, const Attrs&) { return Vars{flatten(in[0])}; }},
      {"permute",
       [](const Vars& in, const Attrs& a) { return Vars{permute(in[0], a.ints("dims"))}; }},
      {"narrow",
       [](const Vars& in, const Attrs& a) {
         return Vars{narrow(in[0], a.integer("axis"), a.integer("start"), a.integer("length"))};
       }},
      {"narrow_backward",
       [](const Vars& in, const Attrs& a) {
         return Vars{
             narrow_backward(in[0], a.integer("axis"), a.integer("start"), a.integer("size"))};
       }},
      {"sum", [](const Vars& in, const Attrs& a) { return Vars{sum(in[0], reduce_options(a))}; }},
      {"mean", [](const Vars& in, const Attrs& a) { return Vars{mean(in[0], reduce_options(a))}; }},
      {"conv2d",
       [](const Vars& in, const Attrs& a) {
         return with_optional_bias(in, [&](const Var& x, const Var& w, const Var* b) {
           return b ? conv2d(x, w, *b, conv2d_options(a)) : conv2d(x, w, conv2d_options(a));
         });
       }},
      {"conv_transpose2d",
       [](const Vars& in, const Attrs& a) {
         return with_optional_bias(in, [&](const Var& x, const Var& w, const Var* b) {
           return b ? conv_transpose2d(x, w, *b, conv_transpose2d_options(a))
                    : conv_transpose2d(x, w, conv_transpose2d_options(a));
         });
       }},
      {"conv2d_weight_grad",
       [](const Vars& in, const Attrs& a) {
         return Vars{conv2d_weight_grad(in[0], in[1], a.pair("kernel_size"), conv2d_options(a))};
       }},
      {"conv1x1",
       [](const Vars& in, const Attrs&) {
         return with_optional_bias(in, [](const Var& x, const Var& w, const Var* b) {
           return b ? conv1x1(x, w, *b) : conv1x1(x, w);
         });
       }},
      {"bias_add", [](const Vars& in, const Attrs&) { return Vars{bias_add(in[0], in[1])}; }},
      {"max_pool2d",
       [](const Vars& in, const Attrs& a) {
         PoolResult r = max_pool2d(in[0], {.kernel_size = a.pair("kernel_size"),
                                           .stride = a.pair("stride"),
                                           .padding = a.pair("padding"),
                                           .dilation = a.pair("dilation"),
                                           .ceil_mode = a.boolean("ceil_mode")});
         return Vars{r.values, r.indices};
       }},
      {"max_unpool2d",
       [](const Vars& in, const Attrs& a) {
         return Vars{max_unpool2d(in[0], in[1],
                                  {.kernel_size = a.pair("kernel_size"),
                                   .stride = a.pair("stride"),
                                   .padding = a.pair("padding"),
                                   .output_size = a.pair("output_size")})};
       }},
      {"gather_at", [](const Vars& in, const Attrs&) { return Vars{gather_at(in[0], in[1])}; }},
      {"scatter_add_at",
       [](const Vars& in, const Attrs& a) {
         return Vars{scatter_add_at(in[0], in[1], a.pair("output_size"))};
       }},
      {"avg_pool2d", [](const Vars& in,
                        const Attrs& a) { return Vars{avg_pool2d(in[0], avg_pool2d_options(a))}; }},
      {"avg_pool2d_backward",
       [](const Vars& in, const Attrs& a) {
         return Vars{avg_pool2d_backward(in[0], a.pair("input_size"), avg_pool2d_options(a))};
       }},
      {"softmax", [](const Vars& in, const Attrs&) { return Vars{softmax(in[0])}; }},
      {"log_softmax", [](const Vars& in, const Attrs&) { return Vars{log_softmax(in[0])}; }},
      {"one_hot",
       [](const Vars& in, const Attrs& a) {
         return Vars{one_hot(in[0], a.integer("num_classes"), a.boolean("float64"))};
       }},
      {"softmax_xent",
       [](const Vars& in, const Attrs& a) {
         return Vars{softmax_xent(
             in[0], in[1],
             {.reduction = a.string("reduction"), .ignore_index = a.integer("ignore_index")})};
       }},
      {"softmax_xent_backward",
       [](const Vars& in, const Attrs& a) {
         return Vars{softmax_xent_backward(in[0], in[1], in[2], a.integer("ignore_index"))};
       }},
  };
  return table;
}

std::vector<std::string> builtin_op_names() {
  std::vector<std::string> names;
  for (const OpDef* op : ops())
    if (op->builtin) names.push_back(op->name);
  return names;
}

class TypedFunctions : public ::testing::TestWithParam<std::string> {};

TEST_P(TypedFunctions, GiveWhatTheCallByNameGives) {
  const OpDef& op = find_op(GetParam());
  auto entry = typed_functions().find(op.name);
  ASSERT_NE(entry, typed_functions().end())
      << op.name
      << " has no typed function in this test's table: add it (tests/typed_ops_test.cpp)";
  const Typed& typed = entry->second;
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

// The table names no op the registry lacks (a renamed op would leave a stale entry behind).
TEST(TypedFunctions, TableNamesOnlyRegisteredOps) {
  for (const auto& [name, typed] : typed_functions()) EXPECT_NO_THROW((void)find_op(name)) << name;
}

}  // namespace
}  // namespace dg
