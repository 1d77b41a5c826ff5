// deltagraph: reverse-mode automatic differentiation.
//
// One generic engine: it walks the recorded graph from the outputs back, visiting only the
// nodes on a path to the requested gradients, calls each op's registered VJP, and sums the
// contributions of values used more than once.
#pragma once

#include <functional>
#include <vector>

#include "deltagraph/core/var.h"

namespace dg {

struct GradOptions {
  // Keep saved inputs after the pass, so the graph can be differentiated again.
  bool retain_graph = false;
  // Record the backward pass itself, so the gradients are differentiable (second
  // derivatives, Hessian-vector products). Implies retain_graph.
  bool create_graph = false;
  // backward() only: called once per leaf the pass reaches, as soon as the leaf's .grad holds
  // this pass's whole contribution (the last VJP that feeds it has run), while the rest of the
  // pass still runs. Data-parallel training (dg::dist::GradientReducer) starts averaging a
  // gradient across processes here, overlapping communication with the backward pass.
  std::function<void(const Var& leaf)> on_leaf_grad_ready;
  // backward() and grad(): called after each node's VJP. Asynchronous work started from the
  // hooks above advances here (MPI makes progress on a non-blocking exchange only inside MPI
  // calls, so the gradient reducer polls its exchanges).
  std::function<void()> after_each_vjp;
};

// The functional form: d(sum_k <cotangent_k, output_k>)/d wrt_i for each i. A scalar output may
// omit its cotangent (it is 1). A wrt that the outputs do not depend on gets zeros.
std::vector<Var> grad(const std::vector<Var>& outputs, const std::vector<Var>& wrt,
                      const std::vector<Var>& cotangents = {}, GradOptions options = {});
std::vector<Var> grad(const Var& output, const std::vector<Var>& wrt, GradOptions options = {});

// Accumulates d(loss)/d(leaf) into .grad() of every leaf that requires a gradient (Params and
// variables) that the loss depends on.
void backward(const Var& loss, const Var& cotangent = {}, GradOptions options = {});

}  // namespace dg
