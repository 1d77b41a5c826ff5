// Independent models differentiated on several threads at once: separate tapes, shared
// read-only parameters. Each thread's gradients must equal the single-threaded ones. Under
// ThreadSanitizer (tools/test builds build-tsan for this) the run must also show no race.
#include <thread>

#include "test_util.h"

namespace dg {
namespace {

struct Shared {
  Param w1{Tensor::randn({4, 1, 3, 3}, 1, DType::f64, 0, 0.5), "w1"};
  Param b1{Tensor::zeros({4}, DType::f64), "b1"};
  Param w2{Tensor::randn({3, 4 * 3 * 3, 1, 1}, 2, DType::f64, 0, 0.5), "w2"};
};

// A small classifier on `images`; returns d loss / d (w1, b1, w2) without touching .grad().
std::vector<Tensor> gradients(const Shared& s, const Tensor& images, const Tensor& labels) {
  Tape tape;
  Var h = relu(bias_add(conv2d(images, s.w1, {.padding = 1}), s.b1));
  auto [p, idx] = max_pool2d(h, {.kernel_size = 2});
  Var up = max_unpool2d(p, idx, {.kernel_size = 2, .output_size = {6, 6}});
  Var pooled = avg_pool2d(up, {.kernel_size = 2});  // [N,4,3,3]
  Var logits = reshape(conv1x1(reshape(pooled, {-1, 36, 1, 1}), s.w2), {-1, 3});
  Var loss = softmax_xent(logits, labels);
  std::vector<Tensor> out;
  for (const Var& g : grad(loss, {s.w1, s.b1, s.w2})) out.push_back(g.value());
  return out;
}

TEST(Concurrency, ThreadsDifferentiateIndependentModelsWithSharedParameters) {
  const Shared shared;
  constexpr int kThreads = 4, kRounds = 5;
  std::vector<Tensor> images, labels;
  std::vector<std::vector<Tensor>> expected;
  for (int t = 0; t < kThreads; ++t) {
    images.push_back(Tensor::randn({2, 1, 6, 6}, 100 + t, DType::f64));
    labels.push_back(Tensor::from(std::vector<int64_t>{t % 3, (t + 1) % 3}, {2}));
    expected.push_back(gradients(shared, images[t], labels[t]));
  }
  std::vector<std::vector<Tensor>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) got[t] = gradients(shared, images[t], labels[t]);
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t)
    for (size_t i = 0; i < expected[t].size(); ++i)
      EXPECT_TRUE(allclose(got[t][i], expected[t][i], 0, 0)) << "thread " << t << " gradient " << i;
  EXPECT_FALSE(shared.w1.grad().defined());  // grad() never writes into the shared parameters
}

TEST(Concurrency, TapesAndNoGradScopesAreThreadLocal) {
  Param w(Tensor::ones({2}, DType::f64));
  Tape tape;  // this thread records
  bool other_recorded = true;
  std::thread([&] {
    Var y = w * 2.0;  // no tape on this thread: nothing is recorded
    other_recorded = y.producer() != nullptr;
  }).join();
  EXPECT_FALSE(other_recorded);
  EXPECT_NE((w * 2.0).producer(), nullptr);
}

}  // namespace
}  // namespace dg
