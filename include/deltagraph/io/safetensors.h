// deltagraph: tensors in the safetensors format, so they move to and from PyTorch's
// `safetensors` package (safetensors.torch.load_file / save_file). Depends on the tensor only.
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

#include <map>
#include <string>

#include "deltagraph/core/tensor.h"

namespace dg {

using Metadata = std::map<std::string, std::string>;

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

// "F32", "F64" or "I64": a dtype as safetensors names it.
const char* safetensors_dtype(DType dtype);

}  // namespace dg
