// deltagraph: forward mode (Jacobian-vector products) and the transforms that combine it with
// reverse mode: Hessian-vector products, Jacobians and Hessians.
//
//   auto f = [](const std::vector<dg::Var>& x) { return std::vector<dg::Var>{dg::tanh(x[0])}; };
//   dg::JvpResult r = dg::jvp(f, {x}, {v});   // r.outputs = f(x), r.tangents = J v
//   dg::Tensor hv = dg::hvp(loss_of, w, v);   // H v, forward over reverse
//   dg::Tensor J = dg::jacobian(g, x);        // [out..., in...], forward or reverse by shape
//
// Forward mode runs f once, recorded, then sweeps the tangents forward through the recorded ops,
// each by its JVP rule (OpDef::jvp) or, for an op without one, by the transpose of its VJP: the
// VJP u -> J^T u is linear in u, so differentiating <J^T u, t> with respect to u gives J t. Every
// op with a VJP therefore has forward mode, user ops included.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "deltagraph/core/op.h"
#include "deltagraph/core/var.h"

namespace dg {

using VarFunction = std::function<std::vector<Var>(const std::vector<Var>&)>;

struct JvpResult {
  std::vector<Var> outputs;   // f(primals)
  std::vector<Var> tangents;  // J tangents, one per output (zeros where none reaches it)
};

// f(primals) and its Jacobian times `tangents` (one per primal, same shape and dtype).
// `use_rules` false sends every op through the transposed VJP (to measure what the rules buy).
JvpResult jvp(const VarFunction& f, const std::vector<Tensor>& primals,
              const std::vector<Tensor>& tangents, bool use_rules = true);

// One op application's output tangents for the given input tangents (undefined: zero), by the
// op's JVP rule, or with `use_rule` false (or no rule) by the transpose of its VJP. Undefined for
// outputs that get no tangent. What jvp() does at each recorded op; the property tests compare
// the two ways.
std::vector<Var> op_jvp(const OpDef& op, const Attrs& attrs, std::span<const Var> inputs,
                        std::span<const Var> outputs, std::span<const Var> tangents,
                        bool use_rule = true, const void* context = nullptr);

// For a scalar function f: the Hessian times v, H v = d/de grad f(x + e v) at e = 0 (forward
// mode over the reverse pass, as JAX's hvp): one reverse pass, recorded, and one forward sweep.
Tensor hvp(const std::function<Var(const Var&)>& f, const Tensor& x, const Tensor& v);

// The Jacobian of y = f(x) as a tensor of shape y.shape + x.shape (float64 or x's dtype):
// jacfwd by forward mode, one JVP per element of x; jacrev by reverse mode, one VJP per element
// of y; jacobian picks the one with fewer passes.
Tensor jacfwd(const std::function<Var(const Var&)>& f, const Tensor& x);
Tensor jacrev(const std::function<Var(const Var&)>& f, const Tensor& x);
Tensor jacobian(const std::function<Var(const Var&)>& f, const Tensor& x);

// The Hessian of a scalar f at x, shape x.shape + x.shape: one Hessian-vector product per
// element of x (forward over reverse).
Tensor hessian(const std::function<Var(const Var&)>& f, const Tensor& x);

}  // namespace dg
