// deltagraph: Graphviz DOT export of recorded graphs, and rendering to SVG or PNG.
//
//   dg::write_dot({loss}, "model.dot");                    // DOT text
//   dg::render({loss}, "model.svg", {.title = "my net"});  // SVG or PNG, through libgvc
//
// One node per recorded op, labelled with the op and its non-default attributes
// ("conv2d k5x5 s2 p1 g2", from the op's registered label); edges carry shape and dtype. Ops
// with several outputs (max_pool2d: values and indices) get one port per output, and int64
// edges (indices) are drawn in their own colour, labelled with the input they feed. Leaves are
// told apart: parameters (name, shape, parameter count), inputs, variables, constants. Outputs
// are highlighted and the parameter total is in the graph's label. Name scopes (dg::Scope)
// become nested clusters, and can be collapsed into one node each. The backward pass recorded
// by dg::grad(..., {.create_graph = true}) can be drawn merged with the forward graph or beside
// it. Optional value statistics; tensors holding NaN or Inf are marked red.
//
// The text is deterministic: node ids come from recording order (op0, op1, ... in the order the
// ops were recorded; leaf0, ... in order of first use), never from addresses, so the same graph
// gives the same text. Every user-provided string (names, scopes) is escaped.
#pragma once

#include <string>
#include <vector>

#include "deltagraph/core/var.h"

namespace dg {

// How the backward pass recorded by dg::grad(..., {.create_graph = true}) is drawn. Its nodes
// are found through the outputs: pass the gradients grad() returned along with the loss
// (`to_dot({loss, grads[0], grads[1]}, ...)`).
enum class BackwardGraph : uint8_t {
  hidden,  // not drawn; outputs that are gradients are left out (the graph label says so)
  merged,  // drawn among the forward ops, each gradient op noting whose VJP made it
  beside,  // drawn in a "backward pass" cluster, one sub-cluster per forward op's VJP
};

struct DotOptions {
  // Graph label, first line (the parameter total follows).
  std::string title = "";
  // The backward pass, if recorded and reachable from the outputs.
  BackwardGraph backward = BackwardGraph::hidden;
  // Draw each name scope (dg::Scope) as a cluster; nested scopes become nested clusters.
  bool scope_clusters = true;
  // Scopes drawn as a single node each ("encoder" or "encoder/block1"; a scope includes its
  // sub-scopes). Edges into and out of it are kept and labelled with their shapes; parameters
  // and constants used only inside it are folded into it. Naming a scope that no drawn op has
  // is a dg::Error.
  std::vector<std::string> collapse = {};
  // Value statistics: min/max/mean on each edge and leaf, the value of scalar outputs, and the
  // norm of the gradient a parameter accumulated through dg::backward.
  bool stats = false;
  // Draws in red every tensor holding NaN or Inf (edges, leaves, the op that produced it), with
  // a note in its label. Costs one pass over every value.
  bool mark_non_finite = true;
  // Lay the graph out left to right instead of top to bottom.
  bool left_to_right = false;
};

// The DOT text of everything the outputs depend on. Throws dg::Error for an undefined output or
// an option naming a scope that is not in the graph.
std::string to_dot(const std::vector<Var>& outputs, const DotOptions& options = {});

// Writes to_dot(...) to `path`; throws dg::Error if the file cannot be written.
void write_dot(const std::vector<Var>& outputs, const std::string& path,
               const DotOptions& options = {});

// Lays out and renders the graph in-process with Graphviz (libgvc, the "dot" layout), choosing
// the format by the extension of `path`: .svg or .png (.dot writes the DOT text, as write_dot).
// Throws dg::Error for another extension, a Graphviz failure or a path that cannot be written.
void render(const std::vector<Var>& outputs, const std::string& path,
            const DotOptions& options = {});

// Renders DOT text to "svg" or "png" bytes in memory with Graphviz. Throws dg::Error carrying
// Graphviz's own message if the text does not parse or the layout or rendering fails.
std::string render_dot(const std::string& dot_text, const std::string& format);

// A string as a DOT double-quoted ID for a plain label: quotes and backslashes escaped,
// newlines as \n (a centred line break), other control characters and malformed UTF-8 replaced.
std::string dot_quote(const std::string& text);

// A string as text inside an HTML-like label (<...>): &, <, >, " escaped, newlines as <BR/>,
// other control characters and malformed UTF-8 replaced.
std::string dot_html_escape(const std::string& text);

}  // namespace dg
