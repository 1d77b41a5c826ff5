// deltagraph: rematerialisation. A checkpointed segment keeps none of its intermediate values
// after the forward pass; its backward pass runs it again to get them back.
//
//   dg::Var h = dg::checkpoint([&](const std::vector<dg::Var>& in) {
//     return dg::relu(conv2(dg::relu(conv1(in[0]))));
//   }, {x});
//   dg::Var y = dg::checkpoint_sequential(layers, x);   // sqrt(n) segments
//
// The segment is recorded once, as a small program of the ops it ran (each op with its
// attributes, dropout's seed among them, so a replay draws the same mask), and the graph holds
// one `checkpoint` node in its place whose inputs are the segment's inputs and every
// differentiable value it used from outside (the layers' parameters). Its VJP replays the
// program with recording on and differentiates it, so gradients are those without checkpointing
// (the same ops in the same order: bitwise equal in float64), and second derivatives and forward
// mode work through it. One caveat: an op that updates state (batch norm's running statistics in
// training) updates it again in the replay.
#pragma once

#include <functional>
#include <vector>

#include "deltagraph/core/var.h"

namespace dg {

// y = fn(inputs), recorded as one node that recomputes fn's intermediate values when
// differentiated. fn must be a pure function of its inputs and the values it captures.
Var checkpoint(const std::function<Var(const std::vector<Var>&)>& fn,
               const std::vector<Var>& inputs);

// The chain layers[n-1](...layers[0](x)) in `segments` checkpointed segments of consecutive
// layers (0: round(sqrt(n))); the last segment is not checkpointed (the backward pass needs its
// values at once). Peak memory drops from n layers' activations to about 2 sqrt(n), for one
// more forward pass. Segments shrink towards the output: segment j is recomputed while the j
// values entering the segments before it are still held, so it gets half a layer less than
// segment j-1 (a layer taken to keep about twice its output's size, as a convolution and its
// activation do), and every segment's backward pass peaks at about the same height.
Var checkpoint_sequential(const std::vector<std::function<Var(const Var&)>>& layers, const Var& x,
                          int segments = 0);

}  // namespace dg
