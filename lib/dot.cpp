// DOT export: walks the graph from the outputs (graph.h) and prints nodes and edges in a
// deterministic order (recording order for ops, first use for leaves).
#include "deltagraph/dot.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "deltagraph/graph.h"

namespace dg {

std::string dot_quote(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': break;
      default: out += c;
    }
  }
  return out + "\"";
}

namespace {

std::string tensor_text(const Shape& shape, DType dtype) {
  return fmt::format("{} {}", to_string(shape), dtype == DType::f32 ? "f32" : dtype == DType::f64 ? "f64" : "i64");
}

class DotWriter {
 public:
  explicit DotWriter(const DotOptions& options) : options_(options) {}

  std::string write(const std::vector<Var>& outputs) {
    for (const Var& v : outputs) visit(v);
    std::sort(nodes_.begin(), nodes_.end(), [](const Node* a, const Node* b) { return a->sequence < b->sequence; });
    std::string body;
    int64_t parameters = 0;
    for (const VarImpl* leaf : leaves_) {
      std::string shape = to_string(leaf->value.shape());
      std::string name = leaf->name.empty() ? "" : leaf->name + "\n";
      if (leaf->kind == VarKind::param) {
        parameters += leaf->value.numel();
        body += fmt::format("  {} [shape=box, style=\"rounded,filled\", fillcolor=\"#fff2cc\", label={}];\n",
                            leaf_id(leaf), dot_quote(fmt::format("{}param {}\n{} parameters", name, shape, leaf->value.numel())));
      } else {
        const char* kind = leaf->kind == VarKind::input ? "input" : "constant";
        body += fmt::format("  {} [shape=box, style=\"filled\", fillcolor=\"{}\", label={}];\n", leaf_id(leaf),
                            leaf->kind == VarKind::input ? "#dae8fc" : "#eeeeee",
                            dot_quote(fmt::format("{}{} {}", name, kind, tensor_text(leaf->value.shape(), leaf->value.dtype()))));
      }
    }
    for (const Node* node : nodes_) {
      body += fmt::format("  {} [shape=ellipse, label={}];\n", node_id(node),
                          dot_quote(op_label(*node->op, node->attrs, node->input_shapes())));
      for (size_t i = 0; i < node->inputs.size(); ++i) {
        const VarImpl* in = node->inputs[i].impl();
        std::string from = in->producer ? node_id(in->producer) : leaf_id(in);
        body += fmt::format("  {} -> {} [label={}];\n", from, node_id(node),
                            dot_quote(tensor_text(in->value.shape(), in->value.dtype())));
      }
    }
    for (size_t k = 0; k < outputs_.size(); ++k) {
      const VarImpl* out = outputs_[k];
      std::string id = fmt::format("output{}", k);
      body += fmt::format("  {} [shape=box, style=\"filled,bold\", fillcolor=\"#f8cecc\", label={}];\n", id,
                          dot_quote(fmt::format("{}\n{}", out->name.empty() ? "output" : out->name,
                                                tensor_text(out->value.shape(), out->value.dtype()))));
      std::string from = out->producer ? node_id(out->producer) : leaf_id(out);
      body += fmt::format("  {} -> {};\n", from, id);
    }
    std::string title = options_.title.empty() ? "" : options_.title + "\n";
    return fmt::format("digraph deltagraph {{\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11];\n"
                       "  edge [fontname=\"Helvetica\", fontsize=9];\n  label={};\n{}}}\n",
                       dot_quote(fmt::format("{}{} parameters", title, parameters)), body);
  }

 private:
  void visit(const Var& v) {
    outputs_.push_back(v.impl());
    std::vector<const VarImpl*> stack{v.impl()};
    while (!stack.empty()) {
      const VarImpl* x = stack.back();
      stack.pop_back();
      if (!x->producer) {
        if (leaf_ids_.emplace(x, leaf_ids_.size()).second) leaves_.push_back(x);
        continue;
      }
      if (!seen_.insert(x->producer).second) continue;
      nodes_.push_back(x->producer);
      for (auto it = x->producer->inputs.rbegin(); it != x->producer->inputs.rend(); ++it) stack.push_back(it->impl());
    }
  }
  std::string node_id(const Node* n) const { return fmt::format("op{}", n->sequence); }
  std::string leaf_id(const VarImpl* v) const { return fmt::format("leaf{}", leaf_ids_.at(v)); }

  const DotOptions& options_;
  std::vector<const VarImpl*> outputs_, leaves_;
  std::map<const VarImpl*, size_t> leaf_ids_;
  std::set<const Node*> seen_;
  std::vector<const Node*> nodes_;
};

}  // namespace

std::string to_dot(const std::vector<Var>& outputs, const DotOptions& options) {
  for (size_t i = 0; i < outputs.size(); ++i)
    if (!outputs[i].defined()) fail("to_dot: output {} is an undefined Var", i);
  return DotWriter(options).write(outputs);
}

void write_dot(const std::vector<Var>& outputs, const std::string& path, const DotOptions& options) {
  const std::string text = to_dot(outputs, options);
  std::ofstream out(path, std::ios::binary);
  if (!out) fail("write_dot: cannot open '{}' for writing", path);
  out << text;
  if (!out.flush()) fail("write_dot: writing '{}' failed", path);
}

}  // namespace dg
