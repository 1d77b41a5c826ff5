// deltagraph: property-based gradient testing (RapidCheck), for the library's ops and yours.
//
// Every registered op carries a sampler (OpDef::sample) that draws random valid inputs and
// attributes: shapes, strides, paddings, dilations, groups, output_padding, ceil_mode, label
// kinds. check_op_properties runs, for an op, the properties every op must satisfy:
//   vjp         the VJP equals central finite differences (float64)
//   vjp_of_vjp  the VJP of the VJP equals finite differences (create_graph)
//   float32     the float32 VJP agrees with the float64 VJP
//   batch       the op on a batch equals the op on each sample, stacked
//   jvp         forward mode (dg::op_jvp) equals central finite differences along a tangent
//   jvp_vjp_adjoint  <u, J v> = <J^T u, v> between the op's forward and reverse mode
//   jvp_rule    an op's own JVP rule equals the transposed VJP (ops with a rule)
// A failing property is shrunk by RapidCheck to a minimal configuration; the report prints it
// with the seed to replay it, and (with case_dir set) writes it as a reference-case file whose
// expected gradients are the finite differences, so `dg cases FILE` shows the failure again.
//
// Link deltagraph::deltagraph_testing for this header (it needs RapidCheck).
#pragma once

#include <rapidcheck.h>

#include <cstdint>
#include <string>
#include <vector>

#include "deltagraph/core/op.h"
#include "deltagraph/diagnostics/check.h"

namespace dg {

// Draws inside a RapidCheck property: each draw is a generator, so it shrinks on failure.
class PropertySampler : public Sampler {
 public:
  explicit PropertySampler(DType dtype) : dtype_(dtype) {}
  int64_t integer(int64_t lo, int64_t hi) override;
  Tensor smooth(const Shape& shape) override;
  Tensor distinct(const Shape& shape) override;
  Tensor positive(const Shape& shape) override;
  Tensor indices(const Shape& shape, int64_t bound) override;
  DType dtype() const override { return dtype_; }

 private:
  uint64_t seed();
  DType dtype_;
};

namespace gen {
// Tensors whose values avoid kinks: |x| in [0.1, 1.1], sign random.
rc::Gen<Tensor> smooth(const Shape& shape, DType dtype = DType::f64);
// Pairwise distinct values, at least 0.01 apart, shuffled (max-pool windows without ties).
rc::Gen<Tensor> distinct(const Shape& shape, DType dtype = DType::f64);
// Values in [0.5, 2].
rc::Gen<Tensor> positive(const Shape& shape, DType dtype = DType::f64);
// A random valid application of `op` (inputs + attributes), from its sampler.
rc::Gen<OpSample> op_sample(const OpDef& op, DType dtype = DType::f64);
}  // namespace gen

// Trials per property: DG_PROPERTY_TRIALS from the environment, else 10.
int default_trials();
// Seed: DG_PROPERTY_SEED from the environment, else 0 (a fresh random seed each run).
uint64_t default_seed();

struct PropertyOptions {
  int trials = default_trials();
  uint64_t seed = default_seed();  // RapidCheck seed; 0 picks one (printed on failure for replay)
  int order = 2;                   // 1: first-order properties only; 2: also vjp_of_vjp
  bool float32 = true;
  bool batch = true;
  bool forward = true;        // the forward-mode properties
  std::string case_dir = "";  // where to write the minimal failing case ("" = nowhere)
};

struct PropertyResult {
  std::string op;
  std::string property;  // "vjp", "vjp_of_vjp", "float32", "batch", "jvp", ...
  bool ok = true;
  bool skipped = false;   // the property does not apply (e.g. batch for a non-separable op)
  int samples = 0;        // the samples it was checked on (shape-rule rejects and samples it
                          // does not apply to are drawn again, up to 100 times the trials)
  std::string report;     // on failure: the minimal configuration, the check's report, the seed
  std::string case_file;  // on failure with case_dir: the written reference case
};

// Runs every applicable property for `op`. Throws dg::Error if the op has no sampler.
std::vector<PropertyResult> check_op_properties(const OpDef& op,
                                                const PropertyOptions& options = {});

// Describes a sample for reports: input shapes/dtypes and attributes.
std::string describe(const OpDef& op, const OpSample& sample);

}  // namespace dg
