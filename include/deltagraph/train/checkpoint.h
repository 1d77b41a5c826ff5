// deltagraph: model checkpoints, saved as safetensors files (io/safetensors.h) so weights move
// to and from PyTorch.
//
//   dg::save_checkpoint("out/model.safetensors", params, &optimizer, {.epoch = 3, .step = 2811});
//   dg::TrainingState resumed = dg::load_checkpoint("out/model.safetensors", params, &optimizer);
//   for (int64_t epoch = resumed.epoch; epoch < epochs; ++epoch) ...
#pragma once

#include <cstdint>
#include <string>

#include "deltagraph/io/safetensors.h"
#include "deltagraph/train/optim.h"

namespace dg {

// ---- model checkpoints ------------------------------------------------------------------------

// Where training stands, saved beside the weights so a run can resume.
struct TrainingState {
  int64_t epoch = 0;  // epochs completed
  int64_t step = 0;   // optimiser steps taken
  Metadata metadata;  // anything else (strings); keys starting with "deltagraph." are reserved
};

// Saves every parameter and buffer of `params` under its name, and with an optimiser its kind,
// learning rate and state (tensors named "optimizer/<param>.<slot>"), plus `state` in __metadata__.
// A checkpoint saved without an optimiser holds exactly the model's state_dict, loadable with
// torch's model.load_state_dict(safetensors.torch.load_file(path)) when the names match.
void save_checkpoint(const std::string& path, const ParamList& params,
                     const Optimizer* optimizer = nullptr, const TrainingState& state = {});

// Loads the weights and buffers into `params` (in place: the Params, layers and optimisers keep
// seeing the same tensors) and, with an optimiser, its state and learning rate. The file must hold
// exactly the model's parameters with the same dtypes and shapes; otherwise a dg::Error lists every
// missing name, unexpected name and mismatch ("shape mismatch for 'conv1.weight': expected
// [32,1,5,5] got [32,1,3,3]") and nothing is changed. Returns the saved TrainingState.
TrainingState load_checkpoint(const std::string& path, ParamList& params,
                              Optimizer* optimizer = nullptr);

}  // namespace dg
