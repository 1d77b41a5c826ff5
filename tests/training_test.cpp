// Small real training runs on the first few hundred Fashion-MNIST images: the loss goes down,
// and a run resumed from a checkpoint continues exactly where it stopped.
#include <gtest/gtest.h>

#include "deltagraph/deltagraph.h"
#include "test_util.h"
#include "train_util.h"

using dg::Tensor;
using dg::Var;
using dg::test::TempDir;

namespace {

// conv2d -> relu -> max_pool2d -> linear, written as an expression over layer helpers.
struct SmallNet {
  dg::ParamList params;
  dg::nn::Conv2d conv;
  dg::nn::Linear fc;
  SmallNet(uint64_t seed, int64_t channels)
      : params(seed),
        conv(params, "conv1", 1, channels, 5,
             {.padding = 2, .init = dg::nn::Init::kaiming_uniform}),
        fc(params, "fc", channels * 14 * 14, 10) {}
  Var logits(const Var& images) const {
    auto [pooled, where] = dg::max_pool2d(dg::relu(conv(images)), {.kernel_size = 2});
    return fc(dg::flatten(pooled));
  }
};

double full_loss(const SmallNet& net, const dg::Dataset& data) {
  dg::NoGrad no_grad;
  return dg::softmax_xent(net.logits(data.images), data.labels).item();
}

// One epoch of mini-batch training; returns the number of steps taken.
int64_t train_epoch(SmallNet& net, dg::Optimizer& opt, const dg::Dataset& data, int64_t epoch,
                    int64_t batch_size) {
  dg::Batches batches(data, {.batch_size = batch_size, .seed = 17, .epoch = epoch});
  for (const dg::Batch& b : batches) {
    opt.zero_grad();
    dg::Tape tape;
    dg::backward(dg::softmax_xent(net.logits(dg::input(b.images)), b.labels));
    opt.step();
  }
  return batches.size();
}

TEST(Training, LossDropsOnRealFashionMnist) {
  DG_REQUIRE_FASHION_MNIST();
  dg::Dataset data = dg::load_mnist(dg::test::fashion_mnist_folder(), "train", 500);
  SmallNet net(1, 8);
  dg::SGD opt(net.params, {.lr = 0.05, .momentum = 0.9});
  const double before = full_loss(net, data);
  for (int64_t epoch = 0; epoch < 3; ++epoch) train_epoch(net, opt, data, epoch, 50);  // 30 steps
  const double after = full_loss(net, data);
  // Chance level is ln(10) = 2.30. With these seeds 30 steps bring the loss from 2.33 to 0.58
  // (a factor of 4; the last digits vary with the thread count); asking for a factor of 2.5
  // leaves a wide margin.
  EXPECT_GT(before, 2.0);
  EXPECT_LT(after, before / 2.5) << "before " << before << ", after " << after;
}

TEST(Training, ResumedRunContinuesExactly) {
  DG_REQUIRE_FASHION_MNIST();
  dg::Dataset data = dg::load_mnist(dg::test::fashion_mnist_folder(), "train", 96);
  TempDir dir;
  const std::string path = dir.file("resume.safetensors");

  // Straight through: two epochs.
  SmallNet straight(5, 4);
  dg::Adam straight_opt(straight.params, {.lr = 0.01});
  for (int64_t epoch = 0; epoch < 2; ++epoch) train_epoch(straight, straight_opt, data, epoch, 32);

  // Interrupted: one epoch, checkpoint, then a fresh process-like start (other seed) that loads
  // the checkpoint and runs the second epoch.
  {
    SmallNet first(5, 4);
    dg::Adam opt(first.params, {.lr = 0.01});
    const int64_t steps = train_epoch(first, opt, data, 0, 32);
    dg::save_checkpoint(path, first.params, &opt, {.epoch = 1, .step = steps});
  }
  SmallNet resumed(99, 4);
  dg::Adam opt(resumed.params, {.lr = 0.01});
  dg::TrainingState state = dg::load_checkpoint(path, resumed.params, &opt);
  ASSERT_EQ(state.epoch, 1);
  EXPECT_EQ(state.step, 3);
  for (int64_t epoch = state.epoch; epoch < 2; ++epoch) train_epoch(resumed, opt, data, epoch, 32);

  for (size_t i = 0; i < straight.params.size(); ++i)
    EXPECT_EQ(straight.params[i].param.value().to_vector(),
              resumed.params[i].param.value().to_vector())
        << straight.params[i].name << " differs after resuming";
}

}  // namespace
