// ONNX import and export (deltagraph/onnx/onnx.h): the round trip through an ONNX file keeps
// values and gradients, indices change convention at the border, and hostile files are errors
// that say what is wrong. ONNX's own conformance tests and onnxruntime run from ctest
// (tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "test_util.h"

namespace dg {
namespace {

using test::f64;

// A model with every op the exporter writes on its way, in float64 so that the round trip can
// be checked to rounding.
struct ManyOps {
  ParamList params{7};
  Param conv_w = params.add("conv.weight", Tensor::randn({4, 3, 3, 3}, 1, DType::f64, 0, 0.3));
  Param conv_b = params.add("conv.bias", Tensor::randn({4}, 2, DType::f64));
  Param up_w = params.add("up.weight", Tensor::randn({4, 2, 3, 3}, 3, DType::f64, 0, 0.3));
  Param bn_w = params.add("bn.weight", Tensor::uniform({2}, 4, DType::f64, 0.5, 1.5));
  Param bn_b = params.add("bn.bias", Tensor::randn({2}, 5, DType::f64));
  Tensor bn_mean = params.add_buffer("bn.running_mean", Tensor::randn({2}, 6, DType::f64));
  Tensor bn_var = params.add_buffer("bn.running_var", Tensor::uniform({2}, 7, DType::f64, 0.5, 2));
  Param fc_w = params.add("fc.weight", Tensor::randn({5, 2}, 8, DType::f64));
  Param fc_b = params.add("fc.bias", Tensor::randn({5}, 9, DType::f64));
  Param one_by_one = params.add("pointwise.weight", Tensor::randn({2, 2, 1, 1}, 10, DType::f64));

  std::vector<Var> operator()(const Var& x) const {
    Var h = conv2d(x, conv_w, conv_b, {.stride = 1, .padding = 1});  // [2,4,8,8]
    h = relu(h);
    auto [pooled, where] = max_pool2d(h, {.kernel_size = 2});                         // [2,4,4,4]
    h = max_unpool2d(pooled, where, {.kernel_size = 2});                              // [2,4,8,8]
    h = conv_transpose2d(h, up_w, {.stride = 2, .padding = 1, .output_padding = 1});  // 16
    h = batch_norm2d(h, bn_w, bn_b, constant(bn_mean, "bn.running_mean"),
                     constant(bn_var, "bn.running_var"), {.training = false});
    h = leaky_relu(h, 0.1);
    h = avg_pool2d(h, {.kernel_size = 3, .stride = 2, .padding = 1, .count_include_pad = false});
    h = upsample_nearest2d(h, {16, 16});
    h = pad2d(h, {.pads = {1, 2, 0, 1}, .mode = "reflect"});  // [2,2,17,19]
    h = conv1x1(h, one_by_one);
    h = elu(sigmoid(h));
    h = add_scalar(mul_scalar(tanh(h), 2.0), 0.5);
    h = mul(h, exp(neg(h)));
    Var pooled_all = adaptive_avg_pool2d(h, {1, 1});       // [2,2,1,1]
    Var logits = linear(flatten(pooled_all), fc_w, fc_b);  // [2,5]
    Var probabilities = softmax(logits);
    Var total = sum(log(probabilities), {.axes = {1}});
    Var reshaped = reshape(permute(logits, {1, 0}), {-1});
    return {logits.named("logits"), total.named("total"), reshaped.named("flat"),
            log_softmax(logits, 1).named("log_probabilities")};
  }
};

TEST(Onnx, ExportThenImportGivesTheSameValuesAndGradients) {
  ManyOps model;
  model.params.eval();
  const Tensor x_value = Tensor::randn({2, 3, 8, 8}, 11, DType::f64);
  Tape tape;
  const Var x = variable(x_value, "x");
  const std::vector<Var> outputs = model(x);
  const std::string bytes = export_onnx_bytes(outputs);
  const OnnxModel imported =
      parse_onnx(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  ASSERT_EQ(imported.inputs.size(), 1u);
  EXPECT_EQ(imported.inputs[0].name, "x");
  EXPECT_EQ(imported.inputs[0].shape, (std::vector<int64_t>{-1, 3, 8, 8}));  // a free batch
  ASSERT_EQ(imported.outputs.size(), outputs.size());
  // Parameters come back as parameters under their names, batch norm's statistics as buffers.
  EXPECT_TRUE(imported.params.contains("conv.weight"));
  EXPECT_EQ(imported.params.buffer("bn.running_var").shape(), Shape{2});
  EXPECT_EQ(imported.params.index_of("bn.running_var"), -1);

  // ONNX keeps float attributes (batch norm's eps, leaky_relu's slope) as float32, so values
  // agree to float32's rounding of those constants, not to float64's.
  const Var x2 = variable(x_value, "x");
  const std::vector<Var> again = imported({x2});
  for (size_t k = 0; k < outputs.size(); ++k) {
    EXPECT_EQ(again[k].shape(), outputs[k].shape()) << outputs[k].name();
    EXPECT_TRUE(allclose(again[k].value(), outputs[k].value(), 1e-7, 1e-9))
        << outputs[k].name() << "\n"
        << to_string(again[k].value()) << "\n"
        << to_string(outputs[k].value());
  }
  // The imported model trains like the original: the same gradients for the same parameters.
  const std::vector<Var> original_grads =
      grad(sum(mul(outputs[0], outputs[0])), {model.conv_w, model.up_w, model.fc_w, x});
  const std::vector<Var> imported_grads =
      grad(sum(mul(again[0], again[0])),
           {imported.params.at("conv.weight"), imported.params.at("up.weight"),
            imported.params.at("fc.weight"), x2});
  for (size_t k = 0; k < original_grads.size(); ++k)
    EXPECT_TRUE(allclose(imported_grads[k].value(), original_grads[k].value(), 1e-6, 1e-9))
        << "gradient " << k;
  // Another batch size runs too.
  const std::vector<Var> three = imported({input(Tensor::randn({3, 3, 8, 8}, 12, DType::f64))});
  EXPECT_EQ(three[0].shape(), (Shape{3, 5}));
}

TEST(Onnx, MaxPoolIndicesLeaveAsFlatNchwPositions) {
  ParamList params;
  Param scale = params.add("scale", Tensor::full({1}, 2.0, DType::f64));
  Tape tape;
  const Tensor x_value = Tensor::randn({2, 3, 4, 6}, 3, DType::f64);
  const Var x = variable(x_value, "x");
  auto [values, indices] = max_pool2d(mul(x, scale), {.kernel_size = 2});
  const std::string bytes = export_onnx_bytes({values, indices});
  const OnnxModel imported =
      parse_onnx(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  const std::vector<Var> out = imported({input(x_value)});
  ASSERT_EQ(out[1].dtype(), DType::i64);
  // ONNX's index of each maximum is ((n*C + c)*H + h)*W + w; deltagraph's is h*W + w.
  const Tensor& flat = out[1].value();
  const Tensor& plane = indices.value();
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const int64_t nc = i / (2 * 3);  // 2x3 pooled positions per plane
    EXPECT_EQ(flat.at(i), plane.at(i) + nc * 4 * 6) << i;
  }
}

// ---- hostile and malformed files ----------------------------------------------------------------

onnx::ModelProto relu_model() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  auto* in = g->add_input();
  in->set_name("x");
  in->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  in->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(3);
  auto* node = g->add_node();
  node->set_op_type("Relu");
  node->set_name("act");
  node->add_input("x");
  node->add_output("y");
  g->add_output()->set_name("y");
  g->mutable_output(0)->mutable_type()->mutable_tensor_type()->set_elem_type(
      onnx::TensorProto::FLOAT);
  return m;
}

OnnxModel parse(const onnx::ModelProto& m) {
  const std::string bytes = m.SerializeAsString();
  return parse_onnx(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

// The message of the dg::Error (of exactly type E) that parsing and running `m` throws.
template <class E = Error>
std::string failure(const onnx::ModelProto& m) {
  try {
    const OnnxModel model = parse(m);
    model({input(Tensor::ones({3}))});
  } catch (const OnnxUnsupported& e) {
    if (std::is_same_v<E, OnnxUnsupported>) return e.what();
    return std::string("OnnxUnsupported instead: ") + e.what();
  } catch (const Error& e) {
    if (std::is_same_v<E, Error>) return e.what();
    return std::string("Error instead: ") + e.what();
  }
  return "no error";
}

#define EXPECT_HAS(text, part) \
  EXPECT_NE(std::string(text).find(part), std::string::npos) << "message: " << (text)

TEST(Onnx, AValidSmallModelRuns) {
  const OnnxModel model = parse(relu_model());
  const std::vector<Var> y = model({input(test::f32({-1, 0, 2}, {3}))});
  EXPECT_EQ(y[0].value().to_vector(), (std::vector<double>{0, 0, 2}));
  EXPECT_EQ(model.op_types(), std::vector<std::string>{"Relu"});
}

TEST(Onnx, BytesThatAreNotAModelAreAnError) {
  const std::string junk = "definitely not protobuf \xff\xff\xff";
  try {
    parse_onnx(std::span(reinterpret_cast<const uint8_t*>(junk.data()), junk.size()), "junk");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "junk is not an ONNX model");
  }
  EXPECT_THROW(load_onnx("/nonexistent/model.onnx"), Error);
}

TEST(Onnx, TensorSizesAreCheckedAgainstTheBytesBeforeAllocating) {
  onnx::ModelProto m = relu_model();
  auto* w = m.mutable_graph()->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  w->add_dims(2);
  w->add_dims(3);
  w->set_raw_data(std::string(8, '\0'));  // 6 floats need 24 bytes
  EXPECT_HAS(
      failure(m),
      "initializer 'w': shape [2,3] of float32 needs 24 bytes of raw_data, the file holds 8");

  w->clear_dims();
  w->add_dims(int64_t{1} << 30);
  w->add_dims(int64_t{1} << 30);  // 2^60 elements: refused before any arithmetic overflows
  EXPECT_HAS(failure(m), "more than 2^40 elements");

  w->clear_dims();
  w->add_dims(-4);
  EXPECT_HAS(failure(m), "negative dimension -4");

  w->clear_dims();
  w->clear_raw_data();
  w->add_dims(3);
  w->add_float_data(1.0f);  // 3 values announced, 1 present
  EXPECT_HAS(failure(m), "needs 3 values, the file holds 1");

  w->set_data_location(onnx::TensorProto::EXTERNAL);
  EXPECT_HAS(failure<OnnxUnsupported>(m), "external file");

  w->set_data_location(onnx::TensorProto::DEFAULT);
  w->set_data_type(onnx::TensorProto::FLOAT16);
  EXPECT_HAS(failure<OnnxUnsupported>(m), "element type FLOAT16");
}

TEST(Onnx, GraphReferencesAndCyclesAreChecked) {
  onnx::ModelProto m = relu_model();
  m.mutable_graph()->mutable_node(0)->set_input(0, "nowhere");
  EXPECT_HAS(failure(m),
             "ONNX node 'act' (Relu): input 'nowhere' is not a graph input, an initializer or any "
             "node's output");

  m = relu_model();
  // a -> b -> a: each waits on the other.
  auto* g = m.mutable_graph();
  g->mutable_node(0)->set_input(0, "b");
  g->mutable_node(0)->set_output(0, "a");
  auto* second = g->add_node();
  second->set_op_type("Relu");
  second->set_name("back");
  second->add_input("a");
  second->add_output("b");
  g->mutable_output(0)->set_name("a");
  EXPECT_HAS(failure(m), "the graph has a cycle: ONNX node 'act' (Relu), ONNX node 'back' (Relu)");

  m = relu_model();
  *m.mutable_graph()->add_node() = m.graph().node(0);
  EXPECT_HAS(failure(m), "output 'y' is defined twice");

  m = relu_model();
  m.mutable_graph()->mutable_output(0)->set_name("missing");
  EXPECT_HAS(failure(m), "graph output 'missing' is not produced by any node");
}

TEST(Onnx, AttributesAreCheckedByTypeAndName) {
  onnx::ModelProto m = relu_model();
  auto* node = m.mutable_graph()->mutable_node(0);
  node->set_op_type("LeakyRelu");
  auto* alpha = node->add_attribute();
  alpha->set_name("alpha");
  alpha->set_type(onnx::AttributeProto::INT);
  alpha->set_i(2);
  EXPECT_HAS(failure(m),
             "ONNX node 'act' (LeakyRelu): attribute 'alpha' must be FLOAT, the file gives INT");

  alpha->set_type(onnx::AttributeProto::FLOAT);
  alpha->set_f(0.5f);
  auto* extra = node->add_attribute();
  extra->set_name("gamma");
  extra->set_type(onnx::AttributeProto::FLOAT);
  EXPECT_HAS(failure<OnnxUnsupported>(m),
             "attribute 'gamma' is not one deltagraph translates for LeakyRelu");

  node->mutable_attribute()->RemoveLast();
  *node->add_attribute() = *alpha;
  EXPECT_HAS(failure(m), "attribute 'alpha' is given twice");

  // Window attributes are bounded before any arithmetic: a stride of 0 once divided by zero.
  m = relu_model();
  node = m.mutable_graph()->mutable_node(0);
  node->set_op_type("MaxPool");
  auto* in =
      m.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape();
  for (int64_t d : {1, 4, 4}) in->add_dim()->set_dim_value(d);  // [3,1,4,4]
  auto* kernel = node->add_attribute();
  kernel->set_name("kernel_shape");
  kernel->set_type(onnx::AttributeProto::INTS);
  kernel->add_ints(2);
  kernel->add_ints(2);
  auto* strides = node->add_attribute();
  *strides = *kernel;
  strides->set_name("strides");
  strides->set_ints(1, 0);
  auto* auto_pad = node->add_attribute();
  auto_pad->set_name("auto_pad");
  auto_pad->set_type(onnx::AttributeProto::STRING);
  auto_pad->set_s("SAME_UPPER");
  try {
    parse(m)({input(Tensor::ones({3, 1, 4, 4}))});
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_HAS(e.what(),
               "ONNX node 'act' (MaxPool): attribute 'strides' is [2, 0]; each value must be in "
               "[1, 2^20]");
  }
}

TEST(Onnx, WhatDeltagraphCannotExpressIsUnsupportedNamingTheNode) {
  onnx::ModelProto m = relu_model();
  m.mutable_graph()->mutable_node(0)->set_op_type("Hardmax");
  EXPECT_HAS(failure<OnnxUnsupported>(m),
             "ONNX node 'act' (Hardmax): deltagraph has no translation for ONNX op 'Hardmax'");

  m = relu_model();
  m.mutable_graph()->mutable_node(0)->set_domain("com.microsoft");
  EXPECT_HAS(failure<OnnxUnsupported>(m), "domain 'com.microsoft'");

  // A 1-D convolution: valid ONNX, but deltagraph's convolutions are 2-D.
  m = relu_model();
  auto* node = m.mutable_graph()->mutable_node(0);
  node->set_op_type("Conv");
  node->add_input("w");
  auto* w = m.mutable_graph()->add_initializer();
  w->set_name("w");
  w->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : {1, 1, 1}) w->add_dims(d);
  w->add_float_data(1.0f);
  auto* in =
      m.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape();
  in->clear_dim();
  for (int64_t d : {1, 1, 3}) in->add_dim()->set_dim_value(d);
  try {
    parse(m)({input(Tensor::ones({1, 1, 3}))});
    ADD_FAILURE() << "accepted";
  } catch (const OnnxUnsupported& e) {
    EXPECT_HAS(e.what(), "ONNX node 'act' (Conv): the input is 3-D ([1,1,3])");
    EXPECT_HAS(e.what(), "1-D and 3-D ones are not supported");
  }
}

TEST(Onnx, ARunThatDoesNotFitIsAnErrorNamingTheNode) {
  const OnnxModel model = parse(relu_model());
  try {
    model({input(Tensor::ones({4}))});
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "input 'x' must have shape [3] (-1: any size), got [4]");
  }
  EXPECT_THROW(model({input(Tensor::ones({3}, DType::f64))}), Error);
  EXPECT_THROW(model({}), Error);
}

// ---- export errors
// -------------------------------------------------------------------------------

TEST(Onnx, ExportRefusesWhatHasNoOnnxForm) {
  Param w(Tensor::randn({4, 3}, 1), "w");
  Tape tape;
  const Var x = variable(Tensor::randn({2, 3}, 2), "x");
  const Var logits = linear(x, w);
  const Var smoothed = softmax_xent(logits, input(Tensor::from(std::vector<int64_t>{1, 2}, {2})),
                                    {.label_smoothing = 0.1});
  try {
    export_onnx_bytes({smoothed});
    ADD_FAILURE() << "exported";
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "label_smoothing");
  }
  // A graph with no input reaching its outputs would bake the data in: refused.
  NoGrad no_grad;
  const Var folded = relu(input(Tensor::ones({3})));
  try {
    export_onnx_bytes({folded});
    ADD_FAILURE() << "exported";
  } catch (const Error& e) {
    EXPECT_HAS(e.what(), "no graph input reaches the outputs");
  }
  EXPECT_THROW(export_onnx_bytes({logits}, {.opset = 9}), Error);
}

// `dg dot model.onnx` draws an ONNX model with deltagraph's conventions: the ops each node became,
// the initializers as parameters, the values named as in the file.
TEST(Onnx, DgDotDrawsAnOnnxModel) {
  Param w(Tensor::randn({4, 1, 3, 3}, 1), "conv.weight");
  std::string path = ::testing::TempDir() + "/dg_dot_model.onnx";
  {
    Tape tape;
    const Var x = variable(Tensor::randn({2, 1, 8, 8}, 2), "image");
    export_onnx({relu(max_pool2d(conv2d(x, w), {.kernel_size = 2}).values).named("features")}, path,
                {.graph_name = "tiny"});
  }
  const std::string command = std::string(DG_TOOL) + " dot " + path + " 2>&1";
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  EXPECT_EQ(pclose(pipe), 0) << out;
  EXPECT_HAS(out, "digraph");
  EXPECT_HAS(out, "tiny (ONNX, opset 13)");
  EXPECT_HAS(out, "conv2d");
  EXPECT_HAS(out, "max_pool2d");
  EXPECT_HAS(out, "conv.weight");
  EXPECT_HAS(out, "features");
}

TEST(Onnx, TensorFilesRoundTrip) {
  const std::string path = ::testing::TempDir() + "/dg_onnx_tensor.pb";
  const Tensor t = Tensor::randn({2, 3}, 5, DType::f64);
  save_onnx_tensor(path, t, "t");
  EXPECT_TRUE(allclose(load_onnx_tensor(path), t, 0, 0));
  const Tensor i = Tensor::from(std::vector<int64_t>{-3, 7}, {2});
  save_onnx_tensor(path, i);
  EXPECT_EQ(load_onnx_tensor(path).to_vector(), (std::vector<double>{-3, 7}));
}

}  // namespace
}  // namespace dg
