// dg ops: every registered op with its inputs, outputs, attributes (and defaults) and VJP;
// `dg ops --markdown` prints docs/ops.md (a test checks the committed file against it).
#include <fmt/core.h>

#include "commands.h"
#include "deltagraph/deltagraph.h"

namespace dg::cli {

namespace {

std::string input_list(const OpDef& op) {
  std::string inputs;
  for (const InputSpec& in : op.inputs) {
    const char* kind = in.kind == InputKind::int64            ? " int64"
                       : in.kind == InputKind::float_or_int64 ? " float|int64"
                       : in.kind == InputKind::buffer         ? " buffer"
                                                              : "";
    // A variadic input reads "x1 float|int64, ...": any number of them, all alike.
    inputs +=
        fmt::format("{}{}{}{}{}{}", inputs.empty() ? "" : ", ", in.name, in.variadic ? "1" : "",
                    kind, in.optional ? "?" : "", in.variadic ? ", ..." : "");
  }
  return inputs;
}

std::string output_list(const OpDef& op) {
  std::string outputs;
  for (const OutputSpec& out : op.outputs)
    outputs += fmt::format("{}{}{}", outputs.empty() ? "" : ", ", out.name,
                           out.differentiable ? "" : " (not differentiable)");
  return outputs;
}

std::string default_text(const AttrSpec& a) {
  return a.default_value ? a.default_value->to_string() : "(required)";
}

// A table cell: Markdown would end the cell at a '|'.
std::string cell(std::string text) {
  for (size_t i = 0; (i = text.find('|', i)) != std::string::npos; i += 2)
    text.replace(i, 1, "\\|");
  return text;
}

// The reverse-mode line: the VJP's formula, and whether it keeps the outputs alive until it runs
// (OpDef::vjp_reads_outputs; an op whose VJP reads only its inputs lets them go first).
std::string vjp_text(const OpDef& op, const std::string& quote) {
  if (!op.vjp) return "none (not differentiable)";
  return quote + op.vjp_formula + quote +
         (op.vjp_reads_outputs ? " (reads the outputs: they are kept for it)" : "");
}

// The forward-mode line: the op's own rule, or the transposed VJP every differentiable op has.
std::string jvp_text(const OpDef& op, const std::string& quote) {
  if (op.jvp) return quote + op.jvp_formula + quote;
  return op.vjp ? "the transposed VJP (no rule of its own)" : "none (not differentiable)";
}

}  // namespace

std::string ops_markdown() {
  std::vector<const OpDef*> builtins;
  for (const OpDef* op : ops())
    if (op->builtin) builtins.push_back(op);
  std::string md =
      "# Ops\n\n"
      "Generated from the op registry by `dg ops --markdown > docs/ops.md`; a test fails when "
      "this\n"
      "file and the registry differ, so edit the op's registration (ops/<family>.cpp), not this "
      "page.\n\n"
      "Layout is NCHW; a pair attribute is `[h, w]` (one number means both); weights are laid out "
      "as in\nPyTorch. The exact forward semantics of every op are in "
      "[FORMAT.md](../tests/data/reference/FORMAT.md).\n"
      "In a VJP, `g` is the cotangent of the output (`dL/dy`); an input marked `?` is optional.\n\n"
      "| op | inputs -> outputs | what it computes |\n|---|---|---|\n";
  for (const OpDef* op : builtins)
    md += fmt::format("| [`{}`](#{}) | {} -> {} | {} |\n", op->name, op->name,
                      cell(input_list(*op)), cell(output_list(*op)), cell(op->summary));
  for (const OpDef* op : builtins) {
    md += fmt::format("\n## {}\n\n{}\n\n", op->name, op->summary);
    md += fmt::format("- inputs: {}\n- outputs: {}\n", input_list(*op), output_list(*op));
    md += fmt::format("- VJP: {}\n", vjp_text(*op, "`"));
    md += fmt::format("- JVP: {}\n", jvp_text(*op, "`"));
    if (!op->attrs.empty()) {
      md += "\n| attribute | type | default | meaning |\n|---|---|---|---|\n";
      for (const AttrSpec& a : op->attrs)
        md += fmt::format("| `{}` | {} | `{}` | {} |\n", a.name, attr_type_name(a.type),
                          cell(default_text(a)), cell(a.doc));
    }
  }
  return md;
}

int ops_command(const std::vector<std::string>& args) {
  if (args.size() == 1 && args[0] == "--markdown") {
    fmt::print("{}", ops_markdown());
    return 0;
  }
  std::vector<const OpDef*> selected;
  if (args.empty()) selected = ops();
  for (const std::string& name : args) selected.push_back(&find_op(name));
  for (const OpDef* op : selected) {
    fmt::print("{}({}) -> {}\n", op->name, input_list(*op), output_list(*op));
    if (!op->summary.empty()) fmt::print("    {}\n", op->summary);
    for (const AttrSpec& a : op->attrs)
      fmt::print("    {}: {} = {}{}\n", a.name, attr_type_name(a.type), default_text(a),
                 a.doc.empty() ? "" : "  — " + a.doc);
    fmt::print("    VJP: {}\n", vjp_text(*op, ""));
    fmt::print("    JVP: {}\n", jvp_text(*op, ""));
  }
  return 0;
}

}  // namespace dg::cli
