// libFuzzer target: the ONNX importer (dg::parse_onnx), and a run of what it accepts on small
// inputs of the declared shapes (tools/fuzz seeds it with ONNX's conformance models).
#include <algorithm>
#include <cstdint>
#include <span>

#include "deltagraph/core/tape.h"
#include "deltagraph/onnx/onnx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dg::OnnxModel model = dg::parse_onnx(std::span(data, size), "fuzz input");
    // Running is bounded by the inputs: only models whose declared inputs are small.
    int64_t elements = 0;
    for (const dg::OnnxValueInfo& in : model.inputs) {
      int64_t n = 1;
      for (int64_t d : in.shape) n *= d < 0 ? 1 : std::min<int64_t>(d, 1 << 16);
      elements += n;
    }
    if (elements > (1 << 16)) return 0;
    dg::NoGrad no_grad;
    model(model.example_inputs());
  } catch (const dg::Error&) {
  }
  return 0;
}
