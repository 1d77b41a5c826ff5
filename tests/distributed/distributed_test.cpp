// Data-parallel training over MPI, run by ctest under mpirun with 1, 2 and 3 ranks
// (tests/CMakeLists.txt). Every rank runs every test; a failure on any rank fails the run.
//
// The main claim: N ranks, each on its share of a global batch, follow one process with the
// whole batch. Each rank computes that one-process run itself (no communication) and compares.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "deltagraph/deltagraph.h"
#include "deltagraph/distributed/distributed.h"

namespace {

using dg::DType;
using dg::Tensor;
using dg::Var;

// Deterministic images and labels (the same on every rank): 3 classes told apart by where the
// bright blob is.
dg::Dataset synthetic_data(int64_t n, DType dtype) {
  Tensor images = Tensor::randn({n, 1, 8, 8}, 7, DType::f64);
  Tensor labels = Tensor::zeros({n}, DType::i64);
  double* px = images.data<double>();
  int64_t* pl = labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    pl[i] = i % 3;
    for (int64_t k = 0; k < 16; ++k) px[i * 64 + pl[i] * 16 + k] += 2.0;
  }
  return {images.to(dtype), labels};
}

// conv -> relu -> max_pool -> flatten -> linear: every op kind the reducer meets in practice.
struct SmallNet {
  dg::ParamList params{11};
  dg::nn::Conv2d conv;
  dg::nn::Linear fc;
  explicit SmallNet(DType dtype)
      : conv(params, "conv", 1, 4, 3, {.padding = "same", .dtype = dtype}),
        fc(params, "fc", 4 * 4 * 4, 3, {.dtype = dtype}) {}
  Var operator()(const Var& x) const {
    return fc(dg::flatten(dg::max_pool2d(dg::relu(conv(x)), {.kernel_size = 2}).values));
  }
};

// The parameters after `steps` SGD-with-momentum steps on batches of the global size
// `batch_size`: one process (reducer null) or this rank's share of each batch (reducer set).
std::vector<Tensor> train(DType dtype, int64_t batch_size, int steps,
                          const dg::dist::ReducerOptions* reducer_options) {
  const dg::Dataset data = synthetic_data(batch_size * steps, dtype);
  SmallNet net(dtype);
  std::unique_ptr<dg::dist::GradientReducer> reducer;
  if (reducer_options)
    reducer = std::make_unique<dg::dist::GradientReducer>(net.params, *reducer_options);
  dg::SGD sgd(net.params, {.lr = 0.05, .momentum = 0.9});
  const int shard = reducer ? dg::dist::rank() : 0, shards = reducer ? dg::dist::size() : 1;
  const dg::Batches batches(
      data, {.batch_size = batch_size, .seed = 3, .shard = shard, .shards = shards});
  for (int64_t step = 0; step < steps; ++step) {
    const dg::Batch b = batches[step];
    dg::Tape tape;
    Var loss = dg::softmax_xent(net(dg::input(b.images)), b.labels);
    if (reducer)
      reducer->backward(loss, b.labels.size(0), step);
    else
      dg::backward(loss);
    sgd.step();
    sgd.zero_grad();
  }
  std::vector<Tensor> out;
  for (const dg::Param& p : net.params.params()) out.push_back(p.value().clone());
  return out;
}

// The largest |a - b| / (1 + |b|) over all parameters.
double max_relative_difference(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    for (int64_t k = 0; k < a[i].numel(); ++k)
      worst = std::max(worst, std::abs(a[i].at(k) - b[i].at(k)) / (1 + std::abs(b[i].at(k))));
  return worst;
}

// True when every rank holds these exact bits.
bool same_bits_on_every_rank(const std::vector<Tensor>& params) {
  uint64_t h = 1469598103934665603ULL;
  for (const Tensor& t : params) {
    const auto* p = static_cast<const unsigned char*>(t.raw());
    for (size_t i = 0; i < t.nbytes(); ++i) h = (h ^ p[i]) * 1099511628211ULL;
  }
  // Equal on all ranks iff the sum of the hashes' halves over the ranks is size() times ours.
  const double hi = static_cast<double>(h >> 32), lo = static_cast<double>(h & 0xffffffffu);
  const std::vector<double> sums = dg::dist::sum({hi, lo});
  return sums[0] == hi * dg::dist::size() && sums[1] == lo * dg::dist::size() &&
         dg::dist::sum(hi * hi) == hi * hi * dg::dist::size();
}

TEST(Distributed, SameParametersAsOneProcessWithTheWholeBatch) {
  const dg::dist::ReducerOptions options{.bucket_mb = 0.001};  // several buckets
  const double f64_error = max_relative_difference(train(DType::f64, 64, 20, &options),
                                                   train(DType::f64, 64, 20, nullptr));
  EXPECT_LE(f64_error, 1e-12) << "float64, " << dg::dist::size() << " ranks";
  const double f32_error = max_relative_difference(train(DType::f32, 64, 20, &options),
                                                   train(DType::f32, 64, 20, nullptr));
  EXPECT_LE(f32_error, 1e-5) << "float32, " << dg::dist::size() << " ranks";
  // A global batch the ranks cannot split evenly (21, 21 and 22 rows for 3): the average is
  // weighted by each rank's rows, so it is still the whole batch's gradient.
  EXPECT_LE(max_relative_difference(train(DType::f64, 64, 5, &options),
                                    train(DType::f64, 64, 5, nullptr)),
            1e-12);
}

TEST(Distributed, DeterministicModeGivesTheSameBitsOnEveryRankAndEveryRun) {
  const dg::dist::ReducerOptions options{.bucket_mb = 0.001, .deterministic = true};
  const std::vector<Tensor> first = train(DType::f32, 64, 20, &options);
  const std::vector<Tensor> second = train(DType::f32, 64, 20, &options);
  EXPECT_TRUE(same_bits_on_every_rank(first));
  for (size_t i = 0; i < first.size(); ++i)
    EXPECT_EQ(std::memcmp(first[i].raw(), second[i].raw(), first[i].nbytes()), 0);
  EXPECT_LE(max_relative_difference(first, train(DType::f32, 64, 20, nullptr)), 1e-5);
}

TEST(Distributed, BroadcastStartsEveryRankFromRankZerosValues) {
  // Each rank draws different initial values (its own seed); the reducer copies rank 0's.
  dg::ParamList params(100 + dg::dist::rank());
  dg::nn::Linear fc(params, "fc", 5, 3, {.dtype = DType::f64});
  params.add_buffer("steps", Tensor::full({2}, static_cast<double>(dg::dist::rank()), DType::f64));
  dg::ParamList reference(100);
  dg::nn::Linear fc0(reference, "fc", 5, 3, {.dtype = DType::f64});
  dg::dist::GradientReducer reducer(params);
  EXPECT_TRUE(dg::allclose(fc.weight.value(), fc0.weight.value(), 0, 0));
  EXPECT_EQ(params.buffer("steps").at(1), 0.0);
}

TEST(Distributed, ModelsThatDifferFailOnEveryRankNamingTheParameterAndTheRanks) {
  ASSERT_GE(dg::dist::size(), 2) << "run with 2 or more ranks (the 1-rank run filters it out)";
  dg::ParamList params;
  dg::nn::Linear fc(params, "fc", 4, dg::dist::rank() == 1 ? 2 : 3, {.dtype = DType::f64});
  try {
    dg::dist::GradientReducer reducer(params);
    ADD_FAILURE() << "no error";
  } catch (const dg::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("the ranks' models differ at entry 0"), std::string::npos) << what;
    EXPECT_NE(what.find("rank 0 has parameter 'fc.weight' float64 [3,4]"), std::string::npos)
        << what;
    EXPECT_NE(what.find("rank 1 has parameter 'fc.weight' float64 [2,4]"), std::string::npos)
        << what;
  }
  // One rank with a parameter more.
  dg::ParamList more;
  dg::nn::Linear a(more, "a", 2, 2, {.dtype = DType::f64});
  if (dg::dist::rank() == 0) dg::nn::Linear extra(more, "extra", 2, 2, {.dtype = DType::f64});
  try {
    dg::dist::check_same_parameters(more);
    ADD_FAILURE() << "no error";
  } catch (const dg::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("rank 0 has parameter 'extra.weight'"), std::string::npos) << what;
    EXPECT_NE(what.find("rank 1 has none (2 in all)"), std::string::npos) << what;
  }
}

TEST(Distributed, ARankThatSkipsAStepIsCaughtBeforeTheGradientsAreExchanged) {
  ASSERT_GE(dg::dist::size(), 2) << "run with 2 or more ranks (the 1-rank run filters it out)";
  SmallNet net(DType::f64);
  dg::dist::GradientReducer reducer(net.params);
  const dg::Dataset data = synthetic_data(8, DType::f64);
  auto step = [&](int64_t number) {
    dg::Tape tape;
    reducer.backward(dg::softmax_xent(net(dg::input(data.images)), data.labels), 8, number);
  };
  step(0);
  step(1);
  // Rank 1 skips step 2.
  try {
    step(dg::dist::rank() == 1 ? 3 : 2);
    ADD_FAILURE() << "no error";
  } catch (const dg::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("the ranks are at different steps (rank 0: step 2, rank 1: step 3"),
              std::string::npos)
        << what;
  }
}

TEST(Distributed, MetricsAreSummedOverTheRanks) {
  const int n = dg::dist::size();
  EXPECT_EQ(dg::dist::sum(static_cast<double>(dg::dist::rank() + 1)), n * (n + 1) / 2.0);
  const std::vector<double> both = dg::dist::sum({1.0, 0.5});
  EXPECT_EQ(both[0], n);
  EXPECT_EQ(both[1], 0.5 * n);
}

}  // namespace

// Every rank runs the tests; only rank 0 prints gtest's report (the others' failures still fail
// the run through their exit status).
int main(int argc, char** argv) {
  dg::dist::World world(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (!world.is_root()) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  // Any rank's failure is every rank's (and mpirun's) exit status.
  const double failures = dg::dist::sum(static_cast<double>(failed != 0));
  return failures > 0 ? 1 : 0;
}
