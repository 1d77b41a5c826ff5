// dg ops: every registered op with its inputs, outputs, attributes (and defaults) and VJP.
#include <fmt/core.h>

#include "commands.h"
#include "deltagraph/deltagraph.h"

namespace dg::cli {

int ops_command(const std::vector<std::string>& args) {
  std::vector<const OpDef*> selected;
  if (args.empty()) selected = ops();
  for (const std::string& name : args) selected.push_back(&find_op(name));
  for (const OpDef* op : selected) {
    std::string inputs, outputs;
    for (const InputSpec& in : op->inputs) {
      const char* kind = in.kind == InputKind::int64            ? " int64"
                         : in.kind == InputKind::float_or_int64 ? " float|int64"
                                                                : "";
      inputs += fmt::format("{}{}{}{}", inputs.empty() ? "" : ", ", in.name, kind,
                            in.optional ? "?" : "");
    }
    for (const OutputSpec& out : op->outputs)
      outputs += fmt::format("{}{}{}", outputs.empty() ? "" : ", ", out.name,
                             out.differentiable ? "" : " (not differentiable)");
    fmt::print("{}({}) -> {}\n", op->name, inputs, outputs);
    if (!op->summary.empty()) fmt::print("    {}\n", op->summary);
    for (const AttrSpec& a : op->attrs)
      fmt::print("    {}: {} = {}{}\n", a.name, attr_type_name(a.type),
                 a.default_value ? a.default_value->to_string() : "(required)",
                 a.doc.empty() ? "" : "  — " + a.doc);
    fmt::print("    VJP: {}\n", op->vjp ? op->vjp_formula : "none (not differentiable)");
  }
  return 0;
}

}  // namespace dg::cli
