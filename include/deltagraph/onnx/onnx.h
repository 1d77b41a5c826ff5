// deltagraph: ONNX models in and out.
//
//   dg::OnnxModel model = dg::load_onnx("resnet.onnx");   // initializers become parameters
//   model.params.train();                                 // fine-tune: batch statistics, dropout
//   dg::Var logits = model({dg::input(images)})[0];       // recorded like any expression
//   ...
//   dg::export_onnx({logits}, "tuned.onnx");              // opset 13, checked by onnx.checker
//
// Import translates each ONNX node into deltagraph ops when the model runs (the graph is dynamic,
// as every deltagraph graph is), so an imported model is differentiable, trainable and drawable.
// ONNX semantics that differ from PyTorch's are translated, not ignored: pads are
// [x1_begin, x2_begin, x1_end, x2_end] (four-sided here too), auto_pad SAME_UPPER/SAME_LOWER/VALID
// become explicit pads, MaxPool's argmax indices are flat over the whole NCHW tensor (deltagraph's
// are per plane) and are converted where they enter and leave, ConvTranspose's output_shape
// implies its pads, pooling strides default to 1, Softmax's axis coerces to 2-D before opset 13,
// Gemm's alpha, beta and transposes are applied, BatchNormalization's momentum weighs the old
// statistics. Anything deltagraph cannot express is an OnnxUnsupported error naming the node, the
// op and the attribute or input at fault.
//
// An ONNX file is untrusted input: the model is validated before anything is allocated for it
// (tensor sizes against the bytes present, dtypes, names every node refers to, cycles, attribute
// types), and a malformed file is a dg::Error, never a crash.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "deltagraph/core/error.h"
#include "deltagraph/core/tensor.h"
#include "deltagraph/core/var.h"
#include "deltagraph/train/nn.h"

namespace dg {

// A valid ONNX model that uses something deltagraph cannot express (a 3-D convolution, an op it
// has no translation for, a dtype it has no tensors of). Other errors mean a malformed model.
class OnnxUnsupported : public Error {
 public:
  using Error::Error;
};

// One graph input or output as the model declares it.
struct OnnxValueInfo {
  std::string name;
  DType dtype = DType::f32;
  // -1 for a dimension without a fixed size (a symbolic "batch", or none given).
  std::vector<int64_t> shape;
  bool has_shape = false;  // false: the model declares no shape at all
};

class OnnxModel {
 public:
  // Float initializers, by their ONNX names: parameters (trainable), except the statistics that
  // BatchNormalization nodes read, which are buffers. Evaluation mode after loading (the model
  // runs as exported: batch norm uses its buffers, dropout is the identity); params.train()
  // switches batch norm to batch statistics and dropout on, for fine-tuning.
  ParamList params;
  std::vector<OnnxValueInfo> inputs;   // the graph inputs that are not initializers
  std::vector<OnnxValueInfo> outputs;  // the graph outputs
  int64_t opset = 0;                   // of the default ("ai.onnx") domain
  std::string producer;                // producer_name and producer_version
  std::string graph_name;

  // Runs the graph on one Var per input (in the order of `inputs`) and returns one Var per
  // output. Ops are recorded on the active tape like any expression; each output is named after
  // its ONNX value. Throws dg::Error naming the node when a shape or dtype does not fit.
  std::vector<Var> operator()(const std::vector<Var>& input_values) const;
  // Zeros of each input's declared shape and dtype (dimensions without a size set to
  // `free_size`), for drawing the graph or a first run. Throws if an input declares no shape.
  std::vector<Var> example_inputs(int64_t free_size = 1) const;
  // The ONNX op types used, each once, in order of first use.
  std::vector<std::string> op_types() const;

  struct Graph;  // the validated nodes (lib/onnx/model.h)
  std::shared_ptr<const Graph> graph;
};

// Reads and validates an ONNX model file.
OnnxModel load_onnx(const std::string& path);
// The same from bytes; `origin` names them in messages.
OnnxModel parse_onnx(std::span<const uint8_t> bytes, std::string_view origin = "<memory>");

struct OnnxExportOptions {
  int64_t opset = 13;  // 13 to 17
  std::string graph_name = "deltagraph";
  // The first axis of every graph input and output is named "N" and left free, so the model
  // takes any batch size. false: every size as recorded.
  bool free_batch = true;
  // The graph inputs in this order (each a dg::input or dg::variable leaf the outputs depend
  // on); empty: in the order the graph first reads them.
  std::vector<Var> inputs = {};
};

// Writes the recorded forward graph behind `outputs` as an ONNX model: inputs (dg::input, or any
// leaf that is not a parameter or constant) become graph inputs, named after the Var (input0, ...
// when unnamed); parameters and constants become initializers under their names; each recorded op
// becomes one or a few ONNX nodes. The inference graph is written: batch norm with its running
// statistics, dropout as the identity. Throws dg::Error naming the op for one without an ONNX
// form (the VJP-only ops, for example), and for an output that was not recorded.
void export_onnx(const std::vector<Var>& outputs, const std::string& path,
                 const OnnxExportOptions& options = {});
// The serialized model, as export_onnx writes it.
std::string export_onnx_bytes(const std::vector<Var>& outputs,
                              const OnnxExportOptions& options = {});

// The ONNX op types (default domain) deltagraph translates.
std::vector<std::string> onnx_supported_ops();
// The op type of each node of a model file, in file order (a protobuf parse, no validation).
std::vector<std::string> onnx_file_op_types(const std::string& path);

// Exports `outputs` as export_onnx does, into `folder` laid out as ONNX's conformance tests are:
// folder/model.onnx and folder/test_data_set_0/input_<k>.pb (the values of `inputs`, the graph
// inputs in order) and output_<k>.pb (the values of `outputs`), so that `dg onnx-test` and
// onnxruntime (tools/onnxruntime/run-test.js) can check the exported model against deltagraph.
void export_onnx_test_folder(const std::vector<Var>& inputs, const std::vector<Var>& outputs,
                             const std::string& folder, OnnxExportOptions options = {});

// A TensorProto file (.pb), as ONNX's conformance tests store inputs and outputs.
Tensor load_onnx_tensor(const std::string& path);
// Writes one, as load_onnx_tensor reads it (raw little-endian data).
void save_onnx_tensor(const std::string& path, const Tensor& tensor, const std::string& name = "");

// One ONNX node-test folder (model.onnx, test_data_set_*/input_*.pb and output_*.pb) run and
// compared: float outputs within |a - b| <= atol + rtol |b| (rtol 1e-3, atol 1e-5: ONNX's own
// backend tests use rtol 1e-3), integer outputs exactly.
struct OnnxTestResult {
  enum class Status { pass, fail, unsupported };
  std::string name;  // the folder's name
  Status status = Status::fail;
  std::string detail;      // the worst error, what failed, or why it is unsupported
  double worst_error = 0;  // the largest |a - b| over every output (pass and fail)
};
OnnxTestResult run_onnx_node_test(const std::string& folder);

}  // namespace dg
