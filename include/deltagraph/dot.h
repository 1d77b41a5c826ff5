// deltagraph: Graphviz DOT export of recorded graphs.
//
//   dg::write_dot(loss, "model.dot");   // then: dot -Tsvg model.dot -o model.svg
//
// One node per recorded op, labelled with the op and its non-default attributes
// ("conv2d k5x5 s2 p1"); edges carry shape and dtype; leaves are told apart (parameters with
// their name, shape and parameter count; inputs; constants); outputs are highlighted.
#pragma once

#include <string>
#include <vector>

#include "deltagraph/var.h"

namespace dg {

struct DotOptions {
  std::string title = "";  // graph label (the parameter total is appended)
};

// The DOT text of everything the outputs depend on. Deterministic: the same graph gives the
// same text.
std::string to_dot(const std::vector<Var>& outputs, const DotOptions& options = {});
// Writes to_dot(...) to `path`; throws dg::Error if the file cannot be written.
void write_dot(const std::vector<Var>& outputs, const std::string& path, const DotOptions& options = {});

// A string as a DOT double-quoted ID: quotes, backslashes and newlines escaped.
std::string dot_quote(const std::string& text);

}  // namespace dg
