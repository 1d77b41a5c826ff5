// The layer helpers and ParamList: names, shapes, counts, initial ranges, seeds, and that a
// layer computes exactly its op.
#include <gtest/gtest.h>

#include <cmath>

#include "deltagraph/deltagraph.h"
#include "test_util.h"

using dg::DType;
using dg::Tensor;
using dg::Var;
using dg::test::ThrowsError;
namespace nn = dg::nn;

namespace {

double max_abs(const Tensor& t) {
  double m = 0;
  for (double x : t.to_vector()) m = std::max(m, std::abs(x));
  return m;
}

TEST(ParamList, LayersRegisterNamedParametersInOrder) {
  dg::ParamList params(1);
  nn::Conv2d conv1(params, "conv1", 1, 32, 5, {.padding = 2});
  nn::ConvTranspose2d up(params, "up", 32, 16, 2, {.stride = 2});
  nn::Conv1x1 mix(params, "mix", 16, 4);
  nn::Linear fc(params, "fc", 128, 10, {.bias = false});

  std::vector<std::string> names;
  std::vector<dg::Shape> shapes;
  for (const auto& [name, param] : params) {
    names.push_back(name);
    shapes.push_back(param.shape());
    EXPECT_EQ(param.name(), name) << "the Param carries its name into graphs and errors";
  }
  EXPECT_EQ(names, (std::vector<std::string>{"conv1.weight", "conv1.bias", "up.weight", "up.bias",
                                             "mix.weight", "mix.bias", "fc.weight"}));
  EXPECT_EQ(shapes, (std::vector<dg::Shape>{
                        {32, 1, 5, 5}, {32}, {32, 16, 2, 2}, {16}, {4, 16, 1, 1}, {4}, {10, 128}}));
  EXPECT_FALSE(fc.bias.defined());
  EXPECT_EQ(params.size(), 7u);
  EXPECT_EQ(params.count(), 800 + 32 + 2048 + 16 + 64 + 4 + 1280);
  EXPECT_EQ(params.at("up.weight"), up.weight) << "the list and the layer share one Param";
  const std::string summary = params.summary();
  EXPECT_NE(summary.find("conv1.weight"), std::string::npos);
  EXPECT_NE(summary.find("[32,1,5,5]"), std::string::npos);
  EXPECT_NE(summary.find("7 parameters, 4244 scalars"), std::string::npos) << summary;
}

TEST(ParamList, DuplicateOrUnknownNamesAreErrors) {
  dg::ParamList params;
  nn::Linear fc(params, "fc", 4, 2);
  EXPECT_TRUE(ThrowsError([&] { nn::Linear again(params, "fc", 4, 2); },
                          {"'fc.weight' is already registered"}));
  EXPECT_TRUE(ThrowsError([&] { params.at("fc.wieght"); },
                          {"no parameter named 'fc.wieght'", "known: fc.weight, fc.bias"}));
  EXPECT_TRUE(ThrowsError([&] { nn::Linear unnamed(params, "", 4, 2); }, {"non-empty name"}));
}

TEST(Layers, ComputeExactlyTheirOp) {
  dg::ParamList params(3);
  nn::Conv2d conv(params, "conv", 2, 4, {3, 2}, {.stride = 2, .padding = 1});
  nn::ConvTranspose2d up(params, "up", 4, 3, 2, {.stride = 2, .output_padding = 1});
  nn::Conv1x1 mix(params, "mix", 3, 5);
  nn::Linear fc(params, "fc", 6, 2);
  Tensor x = Tensor::randn({2, 2, 7, 6}, 9);
  Var h = conv(x);
  EXPECT_EQ(h.value().to_vector(),
            dg::conv2d(x, conv.weight, conv.bias, {.stride = 2, .padding = 1}).value().to_vector());
  Var u = up(h);
  EXPECT_EQ(u.value().to_vector(),
            dg::conv_transpose2d(h, up.weight, up.bias, {.stride = 2, .output_padding = 1})
                .value()
                .to_vector());
  Var m = mix(u);
  EXPECT_EQ(m.shape(), (dg::Shape{2, 5, u.size(2), u.size(3)}));
  EXPECT_EQ(m.value().to_vector(), dg::conv1x1(u, mix.weight, mix.bias).value().to_vector());
  Tensor features = Tensor::randn({3, 6}, 10);
  EXPECT_EQ(fc(features).value().to_vector(),
            dg::linear(features, fc.weight, fc.bias).value().to_vector());
}

TEST(Layers, GradientsReachTheLayerParameters) {
  dg::ParamList params(4);
  nn::Conv2d conv(params, "conv", 1, 2, 3);
  nn::Linear fc(params, "fc", 2 * 4 * 4, 3);
  dg::Tape tape;
  Var logits = fc(dg::flatten(dg::relu(conv(Tensor::randn({2, 1, 6, 6}, 5)))));
  dg::backward(dg::softmax_xent(logits, Tensor::from(std::vector<int64_t>{0, 2}, {2})));
  for (const auto& [name, p] : params) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_EQ(p.grad().shape(), p.shape()) << name;
  }
}

TEST(Layers, PytorchDefaultInitDrawsWithinOneOverSqrtFanIn) {
  dg::ParamList params(5);
  nn::Conv2d conv(params, "conv", 3, 64, 3);  // fan_in 27
  nn::Linear fc(params, "fc", 400, 10);       // fan_in 400
  EXPECT_LE(max_abs(conv.weight.value()), 1 / std::sqrt(27.0));
  EXPECT_GT(max_abs(conv.weight.value()), 0.9 / std::sqrt(27.0));
  EXPECT_LE(max_abs(conv.bias.value()), 1 / std::sqrt(27.0));
  EXPECT_GT(max_abs(conv.bias.value()), 0.0);
  EXPECT_LE(max_abs(fc.weight.value()), 1 / std::sqrt(400.0));
}

TEST(Layers, KaimingAndXavierInitZeroTheBias) {
  dg::ParamList params(6);
  nn::Conv2d conv(params, "conv", 3, 64, 3,
                  {.init = nn::Init::kaiming_normal, .dtype = DType::f64});
  nn::Linear fc(params, "fc", 400, 10, {.init = nn::Init::xavier_uniform});
  EXPECT_EQ(conv.weight.dtype(), DType::f64);
  EXPECT_EQ(max_abs(conv.bias.value()), 0.0);
  EXPECT_EQ(max_abs(fc.bias.value()), 0.0);
  EXPECT_LE(max_abs(fc.weight.value()), std::sqrt(6.0 / 410));
}

TEST(Layers, InitialValuesDependOnSeedAndNameNotOrder) {
  dg::ParamList ab(11), ba(11), other(12);
  nn::Linear a1(ab, "a", 5, 5);
  nn::Linear b1(ab, "b", 5, 5);
  nn::Linear b2(ba, "b", 5, 5);
  nn::Linear a2(ba, "a", 5, 5);
  nn::Linear a3(other, "a", 5, 5);
  EXPECT_EQ(a1.weight.value().to_vector(), a2.weight.value().to_vector());
  EXPECT_EQ(b1.weight.value().to_vector(), b2.weight.value().to_vector());
  EXPECT_NE(a1.weight.value().to_vector(), b1.weight.value().to_vector());
  EXPECT_NE(a1.weight.value().to_vector(), a3.weight.value().to_vector());
}

TEST(Layers, BadConfigurationsAreErrors) {
  dg::ParamList params;
  EXPECT_TRUE(ThrowsError([&] { nn::Conv2d c(params, "c", 3, 4, 3, {.groups = 2}); },
                          {"Conv2d 'c'", "in_channels (3)", "divisible by groups (2)"}));
  EXPECT_TRUE(ThrowsError([&] { nn::Linear l(params, "l", 0, 4); }, {"Linear 'l'", "in_features"}));
  EXPECT_TRUE(ThrowsError([&] { nn::Conv1x1 l(params, "m", 4, 4, {.dtype = DType::i64}); },
                          {"Conv1x1 'm'", "int64"}));
  // Errors from the op itself name the layer's weight.
  nn::Conv2d conv(params, "conv1", 3, 4, 3);
  EXPECT_TRUE(ThrowsError([&] { conv(Tensor::zeros({1, 2, 8, 8})); }, {"conv2d", "channels"}));
}

// ---- batch norm, dropout, buffers and the train/eval mode ---------------------------------------

// PyTorch's names, so that a state_dict moves either way: weight and bias are parameters, the
// running statistics and the batch counter are buffers that optimisers never see.
TEST(BatchNorm2dLayer, RegistersPyTorchsParametersAndBuffers) {
  dg::ParamList params(1);
  nn::BatchNorm2d bn(params, "bn1", 3);
  std::vector<std::string> names, buffers;
  for (const auto& [name, p] : params) names.push_back(name);
  for (const auto& [name, b] : params.buffers()) buffers.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"bn1.weight", "bn1.bias"}));
  EXPECT_EQ(buffers, (std::vector<std::string>{"bn1.running_mean", "bn1.running_var",
                                               "bn1.num_batches_tracked"}));
  EXPECT_EQ(params.count(), 6);
  EXPECT_EQ(params.buffer("bn1.num_batches_tracked").dtype(), DType::i64);
  EXPECT_EQ(params.buffer("bn1.num_batches_tracked").dim(), 0);
  EXPECT_TRUE(params.contains("bn1.running_var"));
  EXPECT_TRUE(ThrowsError([&] { nn::BatchNorm2d again(params, "bn1", 3); },
                          {"a parameter or buffer named 'bn1.weight' is already registered"}));
  EXPECT_NE(params.summary().find("bn1.running_mean"), std::string::npos);
}

TEST(BatchNorm2dLayer, TrainingUpdatesTheBuffersAndEvalUsesThem) {
  dg::ParamList params(1);
  nn::BatchNorm2d bn(params, "bn", 2, {.dtype = DType::f64});
  const Tensor x = dg::test::rand64({4, 2, 3, 3}, 1, 2, 4);  // mean near 3
  (void)bn(dg::input(x));
  (void)bn(dg::input(x));
  EXPECT_EQ(bn.num_batches_tracked.data<int64_t>()[0], 2);
  const double m0 = bn.running_mean.at(0);
  EXPECT_GT(m0, 0.4);  // 0.19 * mean after two updates with momentum 0.1
  params.eval();
  const Tensor y = bn(dg::input(x)).value();
  EXPECT_EQ(bn.running_mean.at(0), m0) << "evaluation leaves the buffers alone";
  EXPECT_EQ(bn.num_batches_tracked.data<int64_t>()[0], 2);
  // Eval is the affine map with the buffers: (x - running_mean) / sqrt(running_var + eps).
  EXPECT_NEAR(y.at(0), (x.at(0) - m0) / std::sqrt(bn.running_var.at(0) + 1e-5), 1e-12);
}

TEST(DropoutLayer, FollowsTheModeAndDrawsANewMaskPerCall) {
  dg::ParamList params(3);
  nn::Dropout drop(params, "drop", 0.5);
  const Tensor x = Tensor::ones({1000}, DType::f64);
  const Tensor a = drop(dg::input(x)).value(), b = drop(dg::input(x)).value();
  int64_t differ = 0;
  for (int64_t i = 0; i < 1000; ++i) differ += a.at(i) != b.at(i);
  EXPECT_GT(differ, 300);       // two independent masks disagree on about half the values
  dg::ParamList copy = params;  // copies share the mode, as optimisers' copies do
  copy.eval();
  EXPECT_FALSE(params.training());
  EXPECT_EQ(drop(dg::input(x)).value().to_vector(), x.to_vector());
  EXPECT_TRUE(ThrowsError([&] { nn::Dropout bad(params, "bad", 2.0); },
                          {"nn::Dropout 'bad': p must be a probability in [0, 1], got 2"}));
}

}  // namespace
