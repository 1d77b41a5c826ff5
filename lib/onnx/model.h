// The onnx layer's internals: the validated graph an OnnxModel runs, and TensorProto conversion.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <onnx/onnx_pb.h>

#include "deltagraph/onnx/onnx.h"

namespace dg {

struct OnnxModel::Graph {
  onnx::ModelProto model;
  // The nodes in an order where every value is produced before it is read (ONNX asks producers
  // to sort them; the importer sorts them itself and rejects cycles).
  std::vector<const onnx::NodeProto*> order;
  // Initializers as the graph reads them: parameters, buffers (as constants sharing the
  // buffer's storage, which batch norm updates in place) and integer constants.
  std::unordered_map<std::string, Var> initializers;
  std::shared_ptr<const bool> training;  // the ParamList's mode
  int64_t opset = 0;
  // Each dropout in training mode draws a new mask: the seed is this counter.
  mutable std::atomic<int64_t> dropout_calls{0};
};

namespace onnx_detail {

// The bytes of a file; `who` names the caller in the error when it cannot be read.
std::string read_file(const std::string& path, std::string_view who);

// "ONNX node 'conv1' (Conv)": how messages name a node (its index when it has no name).
std::string node_label(const onnx::NodeProto& node, size_t index);

// A TensorProto as a Tensor: float and double as they are, int64 and int32 (widened) as int64.
// Validates before allocating: non-negative dims, no overflow, the bytes or values present
// matching the element count, data held in the file (external data is refused). `what` names
// the tensor in messages. Other element types are OnnxUnsupported.
Tensor tensor_from_proto(const onnx::TensorProto& proto, std::string_view what);
// A Tensor as a TensorProto (raw little-endian data).
void tensor_to_proto(const Tensor& tensor, const std::string& name, onnx::TensorProto& proto);
// ONNX's element type for a dtype, and the dtype for an element type (OnnxUnsupported naming
// `what` for a type deltagraph has no tensors of).
int32_t onnx_elem_type(DType dtype);
DType dtype_from_elem_type(int32_t elem_type, std::string_view what);

}  // namespace onnx_detail
}  // namespace dg
