// TensorProto <-> Tensor, validated: a hostile file cannot make us allocate more than it holds.
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>

#include "model.h"

namespace dg {
namespace onnx_detail {

namespace {

const char* elem_type_name(int32_t t) {
  switch (t) {
    case onnx::TensorProto::FLOAT:
      return "FLOAT";
    case onnx::TensorProto::UINT8:
      return "UINT8";
    case onnx::TensorProto::INT8:
      return "INT8";
    case onnx::TensorProto::UINT16:
      return "UINT16";
    case onnx::TensorProto::INT16:
      return "INT16";
    case onnx::TensorProto::INT32:
      return "INT32";
    case onnx::TensorProto::INT64:
      return "INT64";
    case onnx::TensorProto::STRING:
      return "STRING";
    case onnx::TensorProto::BOOL:
      return "BOOL";
    case onnx::TensorProto::FLOAT16:
      return "FLOAT16";
    case onnx::TensorProto::DOUBLE:
      return "DOUBLE";
    case onnx::TensorProto::UINT32:
      return "UINT32";
    case onnx::TensorProto::UINT64:
      return "UINT64";
    case onnx::TensorProto::BFLOAT16:
      return "BFLOAT16";
    default:
      return "an unknown element type";
  }
}

}  // namespace

std::string node_label(const onnx::NodeProto& node, size_t index) {
  if (node.name().empty()) return fmt::format("ONNX node #{} ({})", index, node.op_type());
  return fmt::format("ONNX node '{}' ({})", node.name(), node.op_type());
}

int32_t onnx_elem_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return onnx::TensorProto::FLOAT;
    case DType::f64:
      return onnx::TensorProto::DOUBLE;
    case DType::i64:
      return onnx::TensorProto::INT64;
  }
  return onnx::TensorProto::UNDEFINED;
}

DType dtype_from_elem_type(int32_t elem_type, std::string_view what) {
  switch (elem_type) {
    case onnx::TensorProto::FLOAT:
      return DType::f32;
    case onnx::TensorProto::DOUBLE:
      return DType::f64;
    case onnx::TensorProto::INT64:
    case onnx::TensorProto::INT32:
      return DType::i64;
    default:
      fail<OnnxUnsupported>(
          "{}: element type {} ({}); deltagraph has float32, float64 and int64 "
          "tensors (int32 is widened to int64)",
          what, elem_type_name(elem_type), elem_type);
  }
}

Tensor tensor_from_proto(const onnx::TensorProto& proto, std::string_view what) {
  if (proto.data_location() == onnx::TensorProto::EXTERNAL || proto.external_data_size() > 0)
    fail<OnnxUnsupported>(
        "{}: the data is in an external file; deltagraph reads tensors held "
        "in the model file only",
        what);
  if (proto.has_segment()) fail<OnnxUnsupported>("{}: segmented tensors are not supported", what);
  const DType dtype = dtype_from_elem_type(proto.data_type(), what);
  Shape shape;
  int64_t count = 1;
  constexpr int64_t kMaxElements = int64_t{1} << 40;
  if (proto.dims_size() > 8)
    fail<OnnxUnsupported>("{}: {} dimensions (deltagraph tensors have at most 8)", what,
                          proto.dims_size());
  for (int64_t d : proto.dims()) {
    if (d < 0) fail("{}: negative dimension {} in its dims", what, d);
    if (d > 0 && count > kMaxElements / d) fail("{}: its dims hold more than 2^40 elements", what);
    count *= d;
    shape.push_back(d);
  }
  const bool int32 = proto.data_type() == onnx::TensorProto::INT32;
  const size_t stored_size = int32 ? 4 : dtype_size(dtype);
  const size_t expected_bytes = static_cast<size_t>(count) * stored_size;
  int64_t typed_count = 0;
  switch (proto.data_type()) {
    case onnx::TensorProto::FLOAT:
      typed_count = proto.float_data_size();
      break;
    case onnx::TensorProto::DOUBLE:
      typed_count = proto.double_data_size();
      break;
    case onnx::TensorProto::INT64:
      typed_count = proto.int64_data_size();
      break;
    case onnx::TensorProto::INT32:
      typed_count = proto.int32_data_size();
      break;
    default:
      break;
  }
  if (proto.has_raw_data()) {
    if (proto.raw_data().size() != expected_bytes)
      fail("{}: shape {} of {} needs {} bytes of raw_data, the file holds {}", what, shape,
           dtype_name(dtype), expected_bytes, proto.raw_data().size());
  } else if (typed_count != count) {
    fail("{}: shape {} needs {} values, the file holds {}", what, shape, count, typed_count);
  }
  // Validated: the allocation is no larger than what the file holds.
  Tensor tensor(shape, dtype);
  if (count == 0) return tensor;
  if (proto.has_raw_data()) {
    const char* raw = proto.raw_data().data();
    if (int32) {
      int64_t* out = tensor.data<int64_t>();
      for (int64_t i = 0; i < count; ++i) {
        int32_t v;
        std::memcpy(&v, raw + i * 4, 4);
        out[i] = v;
      }
    } else {
      std::memcpy(tensor.raw(), raw, expected_bytes);
    }
    return tensor;
  }
  switch (proto.data_type()) {
    case onnx::TensorProto::FLOAT:
      std::copy(proto.float_data().begin(), proto.float_data().end(), tensor.data<float>());
      break;
    case onnx::TensorProto::DOUBLE:
      std::copy(proto.double_data().begin(), proto.double_data().end(), tensor.data<double>());
      break;
    case onnx::TensorProto::INT64:
      std::copy(proto.int64_data().begin(), proto.int64_data().end(), tensor.data<int64_t>());
      break;
    case onnx::TensorProto::INT32:
      std::copy(proto.int32_data().begin(), proto.int32_data().end(), tensor.data<int64_t>());
      break;
    default:
      break;
  }
  return tensor;
}

void tensor_to_proto(const Tensor& tensor, const std::string& name, onnx::TensorProto& proto) {
  proto.set_name(name);
  proto.set_data_type(onnx_elem_type(tensor.dtype()));
  for (int64_t d : tensor.shape()) proto.add_dims(d);
  proto.set_raw_data(static_cast<const char*>(tensor.raw()), tensor.nbytes());
}

std::string read_file(const std::string& path, std::string_view who) {
  std::ifstream file(path, std::ios::binary);
  if (!file) fail("{}: cannot open '{}'", who, path);
  std::ostringstream bytes;
  bytes << file.rdbuf();
  if (!file.good() && !file.eof()) fail("{}: reading '{}' failed", who, path);
  return bytes.str();
}

}  // namespace onnx_detail

Tensor load_onnx_tensor(const std::string& path) {
  const std::string data = onnx_detail::read_file(path, "load_onnx_tensor");
  onnx::TensorProto proto;
  if (!proto.ParseFromString(data))
    fail("load_onnx_tensor: '{}' is not a TensorProto (protobuf parse failed)", path);
  return onnx_detail::tensor_from_proto(proto,
                                        fmt::format("tensor '{}' in {}", proto.name(), path));
}

void save_onnx_tensor(const std::string& path, const Tensor& tensor, const std::string& name) {
  onnx::TensorProto proto;
  onnx_detail::tensor_to_proto(tensor, name, proto);
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file || !proto.SerializeToOstream(&file)) fail("save_onnx_tensor: cannot write '{}'", path);
}

}  // namespace dg
