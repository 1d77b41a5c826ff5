// deltagraph: checkpoints in the safetensors format, so weights move to and from PyTorch's
// `safetensors` package (safetensors.torch.load_file / save_file).
//
//   dg::save_checkpoint("out/model.safetensors", params, &optimizer, {.epoch = 3, .step = 2811});
//   dg::TrainingState resumed = dg::load_checkpoint("out/model.safetensors", params, &optimizer);
//   for (int64_t epoch = resumed.epoch; epoch < epochs; ++epoch) ...
//
// The format: an 8-byte little-endian header length N, N bytes of JSON
//   {"conv1.weight": {"dtype": "F32", "shape": [32,1,5,5], "data_offsets": [0, 3200]}, ...,
//    "__metadata__": {"key": "value", ...}}
// then the tensors' raw little-endian bytes. Files are written to a temporary file in the same
// folder, flushed to disk and renamed over the target: a crash leaves the old file or the new
// one, never half of one. Loading checks everything before using anything (header length vs
// file size, JSON, dtypes, shape products, offsets inside the data, no overlaps, no holes) and
// throws dg::Error naming the file, the tensor and the problem.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "deltagraph/optim.h"

namespace dg {

using Metadata = std::map<std::string, std::string>;

// ---- safetensors files ------------------------------------------------------------------------

// Writes `tensors` (float32 -> "F32", float64 -> "F64", int64 -> "I64") and optional string
// metadata. Names must be non-empty and not "__metadata__".
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const Metadata& metadata = {});

struct SafetensorsContents {
  TensorMap tensors;
  Metadata metadata;
};
// Reads and validates a whole safetensors file (dtypes F32, F64 and I64).
SafetensorsContents load_safetensors(const std::string& path);

// ---- model checkpoints ------------------------------------------------------------------------

// Where training stands, saved beside the weights so a run can resume.
struct TrainingState {
  int64_t epoch = 0;  // epochs completed
  int64_t step = 0;   // optimiser steps taken
  Metadata metadata;  // anything else (strings); keys starting with "deltagraph." are reserved
};

// Saves every parameter of `params` under its name, and with an optimiser its kind, learning
// rate and state (tensors named "optimizer/<param>.<slot>"), plus `state` in __metadata__.
// A checkpoint saved without an optimiser holds exactly the model's state_dict, loadable with
// torch's model.load_state_dict(safetensors.torch.load_file(path)) when the names match.
void save_checkpoint(const std::string& path, const ParamList& params,
                     const Optimizer* optimizer = nullptr, const TrainingState& state = {});

// Loads the weights into `params` (in place: the Params, layers and optimisers keep seeing the
// same tensors) and, with an optimiser, its state and learning rate. The file must hold exactly
// the model's parameters with the same dtypes and shapes; otherwise a dg::Error lists every
// missing name, unexpected name and mismatch ("shape mismatch for 'conv1.weight': expected
// [32,1,5,5] got [32,1,3,3]") and nothing is changed. Returns the saved TrainingState.
TrainingState load_checkpoint(const std::string& path, ParamList& params,
                              Optimizer* optimizer = nullptr);

}  // namespace dg
