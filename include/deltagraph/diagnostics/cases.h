// deltagraph: reference cases, small graphs stored as JSON with their inputs, the forward
// values every node must produce and the gradients the backward pass must produce.
//
//   dg::Case c = dg::read_case("tests/data/reference/conv2d_basic_k3.json");
//   dg::CaseResult r = dg::run_case(c);
//   if (!r.passed) std::cout << r.message << "\n";
//
// The file format is specified in tests/data/reference/FORMAT.md. A Case mirrors the file: every
// list keeps the order of the file, and names refer to values in one namespace that starts with
// the inputs and grows with each node's outputs. Nothing here knows any op: nodes are run by
// name through dg::call.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "deltagraph/core/op.h"
#include "deltagraph/core/tensor.h"

namespace dg {

// A leaf of the graph: a float64 or int64 tensor, differentiated when requires_grad is true.
struct CaseInput {
  std::string name;
  Tensor value;
  bool requires_grad = false;
};

// One op application: `outputs = op(inputs..., attrs)`; inputs are positional.
struct CaseNode {
  std::string op;
  std::vector<std::string> inputs;
  AttrMap attrs;
  std::vector<std::string> outputs;
};

struct NamedTensor {
  std::string name;
  Tensor value;
};

struct Case {
  std::string name;
  std::string source;
  std::vector<CaseInput> inputs;
  std::vector<CaseNode> nodes;
  // Seeds of the backward pass: L = sum_k <cotangents[k], value[k]>.
  std::vector<NamedTensor> cotangents;
  // Every value produced by a node, as it must come out of the forward pass.
  std::vector<NamedTensor> expected;
  // dL/d input, for exactly the inputs with requires_grad.
  std::vector<NamedTensor> grads;
  // An element passes when |actual - expected| <= atol + rtol * |expected|.
  double rtol = 1e-10;
  double atol = 1e-12;
};

// Parses and validates the JSON text of a case. Every problem (malformed JSON, a missing key,
// a value of the wrong JSON type, a data length that does not match the shape, a name used
// before it is defined or defined twice, ...) throws dg::Error starting with `origin` (the file
// name) and naming the field: "case.json: inputs.x.data has 5 values but shape [2,3] needs 6".
Case parse_case(std::string_view json_text, const std::string& origin);
// Reads the file at `path` and parses it, with `path` as the origin of error messages.
Case read_case(const std::string& path);

// The checks parse_case applies after reading the JSON, for a Case built in code: names defined
// before use and never twice, an expected value for every node output, grads for exactly the
// inputs that require them (with their shapes), float64/int64 tensors with finite values, and
// sane tolerances. Throws dg::Error prefixed with `origin`.
void validate_case(const Case& c, const std::string& origin);

// The case as JSON text in the layout of the reference files, with every float written in its
// shortest form that round-trips exactly: parse_case(write_case(c)) reproduces c bit for bit.
// Throws dg::Error if the case is invalid (validate_case) or holds a NaN or infinity, which
// JSON cannot represent.
std::string write_case(const Case& c);

struct CaseResult {
  std::string name;
  bool passed = false;
  // What went wrong; several can be true at once (the forward and backward passes are compared
  // independently).
  bool error = false;              // an op, the engine or the case itself threw; see message
  bool forward_mismatch = false;   // a float64 value (or a shape, or a dtype) differs
  bool index_mismatch = false;     // an int64 value differs (max-pool indices)
  bool gradient_mismatch = false;  // a gradient differs
  // Over every float64 element compared: the largest |actual - expected|, the largest
  // |actual - expected| / |expected| (elements expected to be 0 are left out of it), and the
  // largest error as a fraction of what the tolerance allows there (above 1 fails).
  double worst_abs_error = 0;
  double worst_rel_error = 0;
  double worst_tolerance_fraction = 0;
  // The tensor holding the element with the largest tolerance fraction: "expected.y" or
  // "grads.w" (empty if no float64 tensor was compared).
  std::string worst_tensor;
  // How many tensors were compared, float64 and int64 (int64 ones must be equal).
  int64_t compared_tensors = 0;
  // Empty when the case passed; otherwise one sentence per problem, separated by "; ". A
  // mismatch names the first element that differs, with its multi-index.
  std::string message;
};

// Runs the case inside a dg::Tape: inputs become variables (requires_grad) or constants, the
// nodes run in order through dg::call, then one dg::grad over every value with a cotangent.
// Never throws for a problem with the case or an op (an op that is not registered, a shape
// error): that is reported in the result, so one bad case cannot stop a run.
CaseResult run_case(const Case& c);

}  // namespace dg
