// The program tests/distributed/dead_rank.sh runs. Under mpirun, `train DIR VICTIM`: every rank
// trains a small model with the gradient reducer, rank 0 writes a checkpoint to DIR after every
// step, and rank VICTIM kills itself with SIGKILL at step 5, as the OOM killer or a lost node
// would; the others must be ended by mpirun. Alone, `load DIR`: the last checkpoint must load
// (exit 0) and say it was written after one of steps 1 to 5.
#include <csignal>
#include <cstdlib>
#include <string>

#include <fmt/core.h>

#include "deltagraph/deltagraph.h"
#include "deltagraph/distributed/distributed.h"

namespace {

struct Model {
  dg::ParamList params{3};
  dg::nn::Linear fc{params, "fc", 16, 4, {.dtype = dg::DType::f32}};
};

}  // namespace

int main(int argc, char** argv) try {
  dg::dist::World world(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "", dir = argc > 2 ? argv[2] : "";
  Model model;
  dg::SGD sgd(model.params, {.lr = 0.05});
  const std::string checkpoint = dir + "/model.safetensors";
  if (mode == "load" && argc == 3) {
    const int64_t epoch = dg::load_checkpoint(checkpoint, model.params, &sgd).epoch;
    fmt::print("the last checkpoint loads: written after step {}\n", epoch);
    return epoch >= 1 && epoch <= 5 ? 0 : 1;
  }
  if (mode != "train" || argc != 4) {
    fmt::print(stderr, "usage: dead_rank_probe train DIR VICTIM | load DIR\n");
    return 2;
  }
  const int victim = std::atoi(argv[3]);
  dg::dist::GradientReducer reducer(model.params);
  const dg::Tensor x = dg::Tensor::randn({8, 16}, 1);
  const dg::Tensor labels = dg::Tensor::zeros({8}, dg::DType::i64);
  for (int64_t step = 0; step < 1000; ++step) {
    if (step == 5 && world.rank() == victim) std::raise(SIGKILL);
    dg::Tape tape;
    reducer.backward(dg::softmax_xent(model.fc(dg::input(x)), labels), 8, step);
    sgd.step();
    sgd.zero_grad();
    if (world.is_root()) dg::save_checkpoint(checkpoint, model.params, &sgd, {.epoch = step + 1});
  }
  fmt::print(stderr, "rank {} trained on after rank {} was killed\n", world.rank(), victim);
  return 1;
} catch (const dg::Error& e) {
  fmt::print(stderr, "dead_rank_probe: {}\n", e.what());
  return 1;
}
