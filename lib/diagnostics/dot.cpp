// DOT export: collects what the outputs depend on (graph.h), decides where each value is drawn
// (scope clusters, collapsed scopes, the backward pass) and prints nodes and edges in a
// deterministic order: ops in recording order, leaves in order of first use. Nothing here knows
// an op by name: labels come from the registry (op_label), ports from the op's declared outputs
// and the backward pass from the BackwardOrigin the engine records on each node.
#include "deltagraph/diagnostics/dot.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <span>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "deltagraph/core/graph.h"

namespace dg {

// ---- escaping ---------------------------------------------------------------------------

namespace {

constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Length of the well-formed UTF-8 sequence starting at text[i], or 0 if it is malformed
// (Graphviz rejects or mangles malformed UTF-8, so it must never reach the DOT text).
size_t utf8_sequence_length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;  // the range of the first continuation byte
  if (lead >= 0xC2 && lead <= 0xDF)
    length = 2;
  else if (lead == 0xE0)
    length = 3, low = 0xA0;
  else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF)
    length = 3;
  else if (lead == 0xED)
    length = 3, high = 0x9F;  // no UTF-16 surrogates
  else if (lead == 0xF0)
    length = 4, low = 0x90;
  else if (lead >= 0xF1 && lead <= 0xF3)
    length = 4;
  else if (lead == 0xF4)
    length = 4, high = 0x8F;  // nothing past U+10FFFF
  else
    return 0;
  if (i + length > text.size()) return 0;
  if (byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (size_t k = 2; k < length; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return length;
}

// Walks `text` as characters a label can hold: well-formed UTF-8, '\n' for every line break
// (\r\n, \r), a space for a tab, U+FFFD for other control characters and malformed bytes.
// `emit` receives each character (one byte, or a whole multi-byte sequence).
template <class Emit>
void for_each_label_char(std::string_view text, Emit&& emit) {
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '\r') {
      emit(std::string_view("\n"));
      i += (i + 1 < text.size() && text[i + 1] == '\n') ? 2 : 1;
      continue;
    }
    if (c == '\t') {
      emit(std::string_view(" "));
      ++i;
      continue;
    }
    const size_t length = utf8_sequence_length(text, i);
    if (length == 0 ||
        (length == 1 && c != '\n' && (static_cast<unsigned char>(c) < 0x20 || c == 0x7F))) {
      emit(kReplacementCharacter);
      i += std::max<size_t>(length, 1);
      continue;
    }
    emit(text.substr(i, length));
    i += length;
  }
}

}  // namespace

std::string dot_quote(const std::string& text) {
  std::string out = "\"";
  for_each_label_char(text, [&](std::string_view ch) {
    if (ch == "\"")
      out += "\\\"";
    else if (ch == "\\")
      out += "\\\\";  // a label's escape sequences (\l, \N, ...) start with one
    else if (ch == "\n")
      out += "\\n";
    else
      out += ch;
  });
  return out + "\"";
}

std::string dot_html_escape(const std::string& text) {
  std::string out;
  for_each_label_char(text, [&](std::string_view ch) {
    if (ch == "&")
      out += "&amp;";
    else if (ch == "<")
      out += "&lt;";
    else if (ch == ">")
      out += "&gt;";
    else if (ch == "\"")
      out += "&quot;";
    else if (ch == "\n")
      out += "<BR/>";
    else
      out += ch;
  });
  return out;
}

namespace {

// ---- value text -------------------------------------------------------------------------

const char* short_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i64:
      return "i64";
  }
  return "?";
}

std::string tensor_text(const Tensor& t) {
  return fmt::format("{} {}", to_string(t.shape()), short_dtype(t.dtype()));
}

// 1234567 -> "1,234,567": parameter totals of real models are long.
std::string grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string plural(int64_t n, const char* one, const char* many) {
  return fmt::format("{} {}", grouped(n), n == 1 ? one : many);
}

// One pass over a tensor: range and mean of its finite elements, and how many are not.
struct ValueSummary {
  int64_t numel = 0;
  int64_t finite = 0;
  double min = 0, max = 0, sum = 0;
  int64_t nan = 0, inf = 0;
  bool freed = false;  // a backward pass freed the values (the graph keeps shapes only)
  bool non_finite() const { return nan > 0 || inf > 0; }
};

template <class T>
void summarize_into(std::span<const T> values, ValueSummary& s) {
  for (const T v : values) {
    const double d = static_cast<double>(v);
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(d)) {
        ++s.nan;
        continue;
      }
      if (std::isinf(d)) {
        ++s.inf;
        continue;
      }
    }
    if (s.finite == 0) s.min = s.max = d;
    s.min = std::min(s.min, d);
    s.max = std::max(s.max, d);
    s.sum += d;
    ++s.finite;
  }
}

ValueSummary summarize(const Tensor& t) {
  ValueSummary s;
  if (!t.defined()) {
    s.freed = true;
    return s;
  }
  s.numel = t.numel();
  switch (t.dtype()) {
    case DType::f32:
      summarize_into(t.values<float>(), s);
      break;
    case DType::f64:
      summarize_into(t.values<double>(), s);
      break;
    case DType::i64:
      summarize_into(t.values<int64_t>(), s);
      break;
  }
  return s;
}

std::string stats_line(const ValueSummary& s) {
  if (s.freed) return "values freed by backward";
  if (s.numel == 0) return "empty";
  if (s.finite == 0) return "no finite values";
  if (s.numel == 1) return fmt::format("value {:.4g}", s.min);
  return fmt::format("min {:.4g} max {:.4g} mean {:.4g}", s.min, s.max,
                     s.sum / static_cast<double>(s.finite));
}

std::string non_finite_line(const ValueSummary& s) {
  if (s.nan && s.inf) return fmt::format("holds {} NaN and {} Inf", grouped(s.nan), grouped(s.inf));
  if (s.nan) return fmt::format("holds {} NaN", grouped(s.nan));
  return fmt::format("holds {} Inf", grouped(s.inf));
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) out += (i ? "\n" : "") + lines[i];
  return out;
}

// "encoder//block1/" -> {"encoder", "block1"}: empty components are ignored.
std::vector<std::string> scope_components(std::string_view scope) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= scope.size()) {
    size_t end = scope.find('/', start);
    if (end == std::string_view::npos) end = scope.size();
    if (end > start) parts.emplace_back(scope.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

bool starts_with(const std::vector<std::string>& path, const std::vector<std::string>& prefix) {
  return prefix.size() <= path.size() && std::equal(prefix.begin(), prefix.end(), path.begin());
}

// ---- colours ----------------------------------------------------------------------------

constexpr const char* kParamFill = "#fff2cc";
constexpr const char* kInputFill = "#dae8fc";
constexpr const char* kVariableFill = "#d5e8d4";
constexpr const char* kConstantFill = "#eeeeee";
constexpr const char* kOutputFill = "#f8cecc";
constexpr const char* kGradientFill = "#e1d5e7";
constexpr const char* kGradientColour = "#9673a6";
constexpr const char* kSavedValueColour = "#999999";
constexpr const char* kIndexColour = "#d79b00";
constexpr const char* kCollapsedFill = "#f5f5f5";

// ---- the writer -------------------------------------------------------------------------

// A cluster on the way from the root to where something is drawn.
enum class ClusterKind : uint8_t { scope, backward, vjp };
struct ClusterStep {
  ClusterKind kind;
  std::string key;    // unique among siblings
  std::string label;  // shown
  friend bool operator==(const ClusterStep& a, const ClusterStep& b) {
    return a.kind == b.kind && a.key == b.key;
  }
};
using Placement = std::vector<ClusterStep>;

struct Cluster {
  ClusterKind kind = ClusterKind::scope;
  std::string label;
  std::vector<std::string> statements;  // node declarations, in insertion order
  std::vector<size_t> children;         // in order of creation
};

// A scope drawn as a single node.
struct CollapsedScope {
  std::vector<std::string> components;
  std::string name;  // components joined with '/'
  int64_t ops = 0;
  int64_t parameters = 0;  // of the parameters folded into it
  bool non_finite = false;
  bool drawn = false;
};

// What the writer knows about a leaf (a value drawn as a node of its own).
struct LeafInfo {
  size_t rank = 0;
  bool has_consumer = false;
  bool consumers_all_backward = true;
  int group = -1;            // the collapsed scope all its consumers are in, or -1
  bool groups_agree = true;  // every consumer is in `group`
  Placement placement;       // common prefix of the consumers' placements
};

class DotWriter {
 public:
  DotWriter(const std::vector<Var>& outputs, const DotOptions& options) : options_(options) {
    for (const std::string& spec : options.collapse) {
      std::vector<std::string> components = scope_components(spec);
      if (components.empty())
        fail(
            "to_dot: DotOptions::collapse holds an empty scope name; give scope paths such as "
            "\"encoder\" or \"encoder/block1\"");
      collapse_specs_.push_back(std::move(components));
    }
    collect(outputs);
  }

  std::string write() {
    check_collapse_specs();
    place_and_declare();
    std::string text;
    auto out = std::back_inserter(text);
    fmt::format_to(out, "digraph deltagraph {{\n  rankdir={};\n  fontname=\"Helvetica\";\n",
                   options_.left_to_right ? "LR" : "TB");
    fmt::format_to(out, "  node [fontname=\"Helvetica\", fontsize=11];\n");
    fmt::format_to(out, "  edge [fontname=\"Helvetica\", fontsize=9];\n");
    std::vector<std::string> title;
    if (!options_.title.empty()) title.push_back(options_.title);
    title.push_back(plural(total_parameters_, "parameter", "parameters"));
    if (hidden_outputs_)
      title.push_back(fmt::format("{} not drawn (DotOptions::backward is hidden)",
                                  plural(hidden_outputs_, "gradient output", "gradient outputs")));
    fmt::format_to(out, "  label={};\n", dot_quote(join_lines(title)));
    write_cluster(text, 0, 1);
    for (const std::string& edge : edges_) fmt::format_to(out, "  {}\n", edge);
    text += "}\n";
    return text;
  }

 private:
  // ---- collection -----------------------------------------------------------------------

  bool hides(const Node* n) const {
    return options_.backward == BackwardGraph::hidden && n->backward.in_backward_pass;
  }
  // A value drawn as a node of its own: a true leaf, or the result of a hidden backward op.
  bool is_leaf(const VarImpl* v) const { return !v->producer || hides(v->producer); }
  bool beside(const Node* n) const {
    return options_.backward == BackwardGraph::beside && n->backward.in_backward_pass;
  }

  void collect(const std::vector<Var>& outputs) {
    std::unordered_set<const VarImpl*> seen_outputs;
    std::vector<const Node*> stack;
    for (const Var& v : outputs) {
      const VarImpl* impl = v.impl();
      if (impl->producer && hides(impl->producer)) {
        ++hidden_outputs_;
        continue;
      }
      if (!seen_outputs.insert(impl).second) continue;
      outputs_.push_back(impl);
      if (impl->producer && node_seen_.insert(impl->producer).second)
        stack.push_back(impl->producer);
      // Iterative: graphs can be far deeper than the call stack.
      while (!stack.empty()) {
        const Node* n = stack.back();
        stack.pop_back();
        nodes_.push_back(n);
        for (const Var& in : n->inputs) {
          const VarImpl* x = in.impl();
          if (!is_leaf(x) && node_seen_.insert(x->producer).second) stack.push_back(x->producer);
        }
      }
    }
    std::sort(nodes_.begin(), nodes_.end(),
              [](const Node* a, const Node* b) { return a->sequence < b->sequence; });
    node_rank_.reserve(nodes_.size());
    for (size_t i = 0; i < nodes_.size(); ++i) {
      node_rank_.emplace(nodes_[i], i);
      by_sequence_.emplace(nodes_[i]->sequence, nodes_[i]);
    }
    // Leaves numbered by first use, in recording order; leaves that are only outputs last.
    for (const Node* n : nodes_)
      for (const Var& in : n->inputs)
        if (is_leaf(in.impl())) note_leaf(in.impl());
    for (const VarImpl* v : outputs_)
      if (is_leaf(v)) note_leaf(v);
  }

  void note_leaf(const VarImpl* v) {
    if (leaf_info_.count(v)) return;
    leaf_info_.emplace(v, LeafInfo{.rank = leaves_.size()});
    leaves_.push_back(v);
  }

  // ---- where things go ------------------------------------------------------------------

  // The collapsed scope a node is drawn in, or -1. The outermost matching scope wins.
  int group_of(const Node* n) {
    if (collapse_specs_.empty() || beside(n)) return -1;
    auto cached = group_cache_.find(n);
    if (cached != group_cache_.end()) return cached->second;
    const std::vector<std::string> components = scope_components(n->scope);
    const std::vector<std::string>* best = nullptr;
    for (const auto& spec : collapse_specs_)
      if (starts_with(components, spec) && (!best || spec.size() < best->size())) best = &spec;
    int group = -1;
    if (best) {
      auto it = std::find_if(groups_.begin(), groups_.end(),
                             [&](const CollapsedScope& g) { return g.components == *best; });
      if (it == groups_.end()) {
        CollapsedScope g;
        g.components = *best;
        for (size_t i = 0; i < best->size(); ++i) g.name += (i ? "/" : "") + (*best)[i];
        groups_.push_back(std::move(g));
        it = groups_.end() - 1;
      }
      group = static_cast<int>(it - groups_.begin());
    }
    group_cache_.emplace(n, group);
    return group;
  }

  Placement scope_placement(const std::vector<std::string>& components) const {
    Placement p;
    if (!options_.scope_clusters) return p;
    for (const std::string& c : components) p.push_back({ClusterKind::scope, c, c});
    return p;
  }

  // Where an op node is drawn (not collapsed).
  Placement op_placement(const Node* n) const {
    if (beside(n)) {
      Placement p{{ClusterKind::backward, "backward", "backward pass"}};
      if (n->backward.vjp_op)
        p.push_back(
            {ClusterKind::vjp, std::to_string(n->backward.vjp_of), "VJP of " + forward_label(n)});
      return p;
    }
    return scope_placement(scope_components(n->scope));
  }

  // Where whatever an edge into node n lands is drawn: n itself, or its collapsed scope.
  Placement target_placement(const Node* n) {
    const int g = group_of(n);
    if (g < 0) return op_placement(n);
    std::vector<std::string> parent = groups_[g].components;
    parent.pop_back();
    return scope_placement(parent);
  }

  // The label of the forward op whose VJP recorded n: its full label if it is drawn.
  std::string forward_label(const Node* n) const {
    auto it = by_sequence_.find(n->backward.vjp_of);
    if (it != by_sequence_.end() && it->second->op == n->backward.vjp_op)
      return op_label(*it->second->op, it->second->attrs, it->second->input_shapes());
    return n->backward.vjp_op->name;
  }

  size_t cluster_for(const Placement& placement) {
    size_t current = 0;
    for (const ClusterStep& step : placement) {
      auto key = std::make_tuple(current, step.kind, step.key);
      auto it = cluster_index_.find(key);
      if (it == cluster_index_.end()) {
        clusters_.push_back({step.kind, step.label, {}, {}});
        const size_t created = clusters_.size() - 1;
        clusters_[current].children.push_back(created);
        it = cluster_index_.emplace(key, created).first;
      }
      current = it->second;
    }
    return current;
  }

  void check_collapse_specs() const {
    if (collapse_specs_.empty()) return;
    std::vector<std::vector<std::string>> present;
    for (const Node* n : nodes_)
      if (!beside(n)) present.push_back(scope_components(n->scope));
    for (size_t i = 0; i < collapse_specs_.size(); ++i) {
      const auto& spec = collapse_specs_[i];
      if (std::any_of(present.begin(), present.end(),
                      [&](const auto& p) { return starts_with(p, spec); }))
        continue;
      std::vector<std::string> names;
      for (const auto& p : present) {
        std::string joined;
        for (size_t k = 0; k < p.size(); ++k) {
          joined += (k ? "/" : "") + p[k];
          if (std::find(names.begin(), names.end(), joined) == names.end()) names.push_back(joined);
        }
      }
      std::string list;
      for (size_t k = 0; k < names.size() && k < 12; ++k)
        list += (k ? ", " : "") + dot_quote(names[k]);
      if (names.size() > 12) list += ", ...";
      fail("to_dot: DotOptions::collapse names scope {}, but no drawn op was recorded in it ({})",
           dot_quote(options_.collapse[i]),
           names.empty() ? std::string("the graph has no scopes; open them with dg::Scope")
                         : "scopes in the graph: " + list);
    }
  }

  // ---- declarations ---------------------------------------------------------------------

  const ValueSummary& summary(const VarImpl* v) {
    auto it = summaries_.find(v);
    if (it == summaries_.end()) it = summaries_.emplace(v, summarize(v->value)).first;
    return it->second;
  }
  bool wants_values() const { return options_.stats || options_.mark_non_finite; }
  bool marked(const VarImpl* v) { return options_.mark_non_finite && summary(v).non_finite(); }

  void place_and_declare() {
    // Who uses each leaf decides where it is drawn and whether a collapsed scope folds it in.
    for (const Node* n : nodes_) {
      const int g = group_of(n);
      if (g >= 0) {
        ++groups_[g].ops;
        for (size_t i = 0; i < n->outputs.size(); ++i)
          if (marked(&n->outputs[i])) groups_[g].non_finite = true;
      }
      const Placement p = target_placement(n);
      for (const Var& in : n->inputs) {
        if (!is_leaf(in.impl())) continue;
        LeafInfo& info = leaf_info_.at(in.impl());
        if (!info.has_consumer) {
          info.placement = p;
          info.group = g;
        } else {
          size_t common = 0;
          while (common < info.placement.size() && common < p.size() &&
                 info.placement[common] == p[common])
            ++common;
          info.placement.resize(common);
          if (info.group != g) info.groups_agree = false;
        }
        info.has_consumer = true;
        info.consumers_all_backward &= n->backward.in_backward_pass;
      }
    }
    for (const VarImpl* v : outputs_)
      if (is_leaf(v)) leaf_info_.at(v).groups_agree = false;  // an output leaf stays visible

    // Clusters are created in recording order of their first op, whatever is declared first.
    for (const Node* n : nodes_) cluster_for(target_placement(n));
    for (const VarImpl* leaf : leaves_) declare_leaf(leaf);
    for (const Node* n : nodes_)
      if (group_of(n) < 0) declare_op(n);
    for (size_t g = 0; g < groups_.size(); ++g) declare_group(g);
    for (const Node* n : nodes_) add_input_edges(n);
    for (size_t k = 0; k < outputs_.size(); ++k) declare_output(k);
  }

  bool absorbed(const VarImpl* leaf) const {
    const LeafInfo& info = leaf_info_.at(leaf);
    return info.has_consumer && info.group >= 0 && info.groups_agree && leaf->producer == nullptr &&
           (leaf->kind == VarKind::param || leaf->kind == VarKind::constant);
  }

  void declare_leaf(const VarImpl* leaf) {
    const LeafInfo& info = leaf_info_.at(leaf);
    if (leaf->kind == VarKind::param) total_parameters_ += leaf->value.numel();
    if (absorbed(leaf)) {
      if (leaf->kind == VarKind::param) groups_[info.group].parameters += leaf->value.numel();
      return;
    }
    std::vector<std::string> lines;
    if (!leaf->name.empty()) lines.push_back(leaf->name);
    const char* fill = kConstantFill;
    const char* style = "filled";
    if (leaf->producer) {  // the result of a hidden backward op
      lines.push_back("gradient " + tensor_text(leaf->value));
      lines.push_back("(backward pass hidden)");
      fill = kGradientFill;
    } else if (leaf->kind == VarKind::param) {
      lines.push_back("param " + to_string(leaf->value.shape()) +
                      (leaf->value.dtype() == DType::f64 ? " f64" : ""));
      lines.push_back(plural(leaf->value.numel(), "parameter", "parameters"));
      fill = kParamFill;
      style = "rounded,filled";
    } else if (leaf->kind == VarKind::input) {
      lines.push_back((leaf->requires_grad ? "variable " : "input ") + tensor_text(leaf->value));
      fill = leaf->requires_grad ? kVariableFill : kInputFill;
    } else {
      lines.push_back("constant " + tensor_text(leaf->value));
    }
    bool red = false;
    if (wants_values()) {
      const ValueSummary& s = summary(leaf);
      if (options_.stats) lines.push_back(stats_line(s));
      if (options_.mark_non_finite && s.non_finite()) {
        lines.push_back(non_finite_line(s));
        red = true;
      }
      if (leaf->grad.defined()) {
        const ValueSummary g = summarize(leaf->grad);
        if (options_.stats && !g.non_finite())
          lines.push_back(fmt::format("grad norm {:.4g}", grad_norm(leaf->grad)));
        if (options_.mark_non_finite && g.non_finite()) {
          lines.push_back("grad " + non_finite_line(g));
          red = true;
        }
      }
    }
    const Placement placement =
        leaf->kind == VarKind::input || leaf->producer ? Placement{} : info.placement;
    clusters_[cluster_for(placement)].statements.push_back(fmt::format(
        "{} [shape=box, style=\"{}\", fillcolor=\"{}\"{}, label={}];", leaf_id(leaf), style, fill,
        red ? ", color=red, fontcolor=red, penwidth=2" : "", dot_quote(join_lines(lines))));
  }

  static double grad_norm(const Tensor& g) {
    double sum = 0;
    for (double v : g.to_vector()) sum += v * v;
    return std::sqrt(sum);
  }

  void declare_op(const Node* n) {
    std::vector<std::string> lines{op_label(*n->op, n->attrs, n->input_shapes())};
    const bool backward = n->backward.in_backward_pass;
    if (backward && !n->backward.vjp_op)
      lines.push_back("gradient sum");
    else if (backward && !beside(n))
      lines.push_back("VJP of " + n->backward.vjp_op->name);
    if (n->values_freed()) lines.push_back("values freed by backward");
    bool red = false;
    for (size_t i = 0; i < n->outputs.size(); ++i) red |= marked(&n->outputs[i]);
    std::string statement;
    if (n->outputs.size() == 1) {
      std::string attrs;
      if (backward)
        attrs += fmt::format("style=\"filled{}\", fillcolor=\"{}\", ", n->released ? ",dashed" : "",
                             kGradientFill);
      else if (n->released)
        attrs += "style=dashed, ";
      if (red) attrs += "color=red, fontcolor=red, penwidth=2, ";
      statement = fmt::format("{} [{}label={}];", op_id(n), attrs, dot_quote(join_lines(lines)));
    } else {
      // One port per output, so that each edge leaves from the output it carries.
      std::string html = "<TABLE BORDER=\"0\" CELLBORDER=\"1\" CELLSPACING=\"0\" CELLPADDING=\"4\"";
      if (backward) html += fmt::format(" BGCOLOR=\"{}\"", kGradientFill);
      if (red) html += " COLOR=\"red\"";
      html += fmt::format("><TR><TD COLSPAN=\"{}\">{}</TD></TR><TR>", n->outputs.size(),
                          dot_html_escape(join_lines(lines)));
      for (size_t i = 0; i < n->outputs.size(); ++i)
        html += fmt::format("<TD PORT=\"o{}\">{}</TD>", i, dot_html_escape(n->op->outputs[i].name));
      html += "</TR></TABLE>";
      statement = fmt::format("{} [shape=plain, label=<{}>];", op_id(n), html);
    }
    clusters_[cluster_for(op_placement(n))].statements.push_back(std::move(statement));
  }

  void declare_group(size_t g) {
    const CollapsedScope& group = groups_[g];
    std::vector<std::string> lines{group.name, plural(group.ops, "op", "ops")};
    if (group.parameters)
      lines.back() += ", " + plural(group.parameters, "parameter", "parameters");
    std::vector<std::string> parent = group.components;
    parent.pop_back();
    clusters_[cluster_for(scope_placement(parent))].statements.push_back(fmt::format(
        "{} [shape=box3d, style=filled, fillcolor=\"{}\"{}, label={}];", group_id(g),
        kCollapsedFill, group.non_finite ? ", color=red, fontcolor=red, penwidth=2" : "",
        dot_quote(join_lines(lines))));
  }

  // ---- edges ----------------------------------------------------------------------------

  std::string op_id(const Node* n) const { return fmt::format("op{}", node_rank_.at(n)); }
  std::string leaf_id(const VarImpl* v) const {
    return fmt::format("leaf{}", leaf_info_.at(v).rank);
  }
  std::string group_id(size_t g) const { return fmt::format("scope{}", g); }

  // The endpoint an edge carrying v leaves from, and the collapsed scope it is in (or -1).
  std::pair<std::string, int> source(const VarImpl* v) {
    if (is_leaf(v)) {
      if (absorbed(v)) {
        const int g = leaf_info_.at(v).group;
        return {group_id(g), g};
      }
      return {leaf_id(v), -1};
    }
    const Node* p = v->producer;
    const int g = group_of(p);
    if (g >= 0) return {group_id(g), g};
    if (p->outputs.size() == 1) return {op_id(p), -1};
    // The compass point makes the edge leave from the side facing the next rank.
    return {fmt::format("{}:o{}:{}", op_id(p), v->output_index, options_.left_to_right ? "e" : "s"),
            -1};
  }

  // True if v flows backwards: made by the backward pass, or a leaf only it uses (the seed).
  bool is_gradient_value(const VarImpl* v) const {
    if (!is_leaf(v)) return v->producer->backward.in_backward_pass;
    const LeafInfo& info = leaf_info_.at(v);
    return v->producer != nullptr || (info.has_consumer && info.consumers_all_backward);
  }

  void add_input_edges(const Node* n) {
    const int target_group = group_of(n);
    const std::string target = target_group >= 0 ? group_id(target_group) : op_id(n);
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const VarImpl* v = n->inputs[i].impl();
      const auto [from, source_group] = source(v);
      if (target_group >= 0 && source_group == target_group) continue;  // inside a collapsed scope
      // A value enters a collapsed scope once, however many ops inside use it.
      if (target_group >= 0 && !entered_.emplace(v, target_group).second) continue;

      std::vector<std::string> lines;
      if (!is_leaf(v) && !v->name.empty()) lines.push_back(v->name);
      const bool index = v->value.dtype() == DType::i64;
      // Integer inputs (pooling indices, class labels) say which input they feed.
      const std::string input_name = n->op->input_name(i);
      if (index && target_group < 0 && input_name != v->name) lines.push_back(input_name);
      lines.push_back(tensor_text(v->value));
      if (!is_leaf(v) && wants_values()) {
        const ValueSummary& s = summary(v);
        if (options_.stats) lines.push_back(stats_line(s));
        if (options_.mark_non_finite && s.non_finite()) lines.push_back(non_finite_line(s));
      }

      std::vector<std::string> styles;
      std::string colour;
      const bool into_backward = n->backward.in_backward_pass;
      const bool gradient = is_gradient_value(v);
      if (into_backward) styles.push_back("dashed");
      if (index) {
        styles.push_back("bold");
        colour = kIndexColour;
      } else if (into_backward || gradient) {
        colour = gradient ? kGradientColour : kSavedValueColour;
      }
      if (marked(v)) colour = "red";
      // Saved forward values feeding a backward pass drawn beside must not pull it into the
      // forward graph's ranks. Such an edge may end up within one rank, and Graphviz 2.43 writes
      // past the end of its rank array when it makes room for the label of an edge within the
      // top rank (heap corruption, fixed in later versions): those edges get an external label.
      const bool unconstrained = beside(n) && !gradient;
      std::string attrs =
          fmt::format("{}={}", unconstrained ? "xlabel" : "label", dot_quote(join_lines(lines)));
      if (!styles.empty()) {
        std::string style;
        for (size_t k = 0; k < styles.size(); ++k) style += (k ? "," : "") + styles[k];
        attrs += fmt::format(", style=\"{}\"", style);
      }
      if (!colour.empty()) attrs += fmt::format(", color=\"{}\", fontcolor=\"{}\"", colour, colour);
      if (unconstrained) attrs += ", constraint=false";
      edges_.push_back(fmt::format("{} -> {} [{}];", from, target, attrs));
    }
  }

  void declare_output(size_t k) {
    const VarImpl* v = outputs_[k];
    const bool gradient = !is_leaf(v) && v->producer->backward.in_backward_pass;
    std::vector<std::string> lines{v->name.empty() ? (gradient ? "gradient" : "output") : v->name,
                                   tensor_text(v->value)};
    bool red = false;
    if (wants_values()) {
      const ValueSummary& s = summary(v);
      if (options_.stats) lines.push_back(stats_line(s));
      if (options_.mark_non_finite && s.non_finite()) {
        lines.push_back(non_finite_line(s));
        red = true;
      }
    }
    const std::string id = fmt::format("output{}", k);
    clusters_[0].statements.push_back(fmt::format(
        "{} [shape=box, style=\"filled,bold\", fillcolor=\"{}\"{}, label={}];", id, kOutputFill,
        red ? ", color=red, fontcolor=red" : "", dot_quote(join_lines(lines))));
    edges_.push_back(fmt::format("{} -> {} [style=bold{}];", source(v).first, id,
                                 gradient ? fmt::format(", color=\"{}\"", kGradientColour) : ""));
  }

  // ---- printing -------------------------------------------------------------------------

  void write_cluster(std::string& text, size_t index, int depth) {
    const Cluster& c = clusters_[index];
    const std::string indent(2 * depth, ' ');
    auto out = std::back_inserter(text);
    if (index != 0) {
      fmt::format_to(out, "{}subgraph cluster_{} {{\n", std::string(2 * (depth - 1), ' '),
                     index - 1);
      fmt::format_to(out, "{}label={};\n", indent, dot_quote(c.label));
      switch (c.kind) {
        case ClusterKind::scope:
          fmt::format_to(out, "{}style=\"rounded,dashed\"; color=\"#888888\";\n", indent);
          break;
        case ClusterKind::backward:
          fmt::format_to(out, "{}style=\"rounded,filled\"; fillcolor=\"#f7f2fa\"; color=\"{}\";\n",
                         indent, kGradientColour);
          break;
        case ClusterKind::vjp:
          fmt::format_to(out, "{}style=\"rounded,filled\"; fillcolor=\"#ffffff\"; color=\"{}\";\n",
                         indent, kGradientColour);
          break;
      }
    }
    for (const std::string& s : c.statements) fmt::format_to(out, "{}{}\n", indent, s);
    for (size_t child : c.children) write_cluster(text, child, depth + 1);
    if (index != 0) fmt::format_to(out, "{}}}\n", std::string(2 * (depth - 1), ' '));
  }

  const DotOptions& options_;
  std::vector<std::vector<std::string>> collapse_specs_;

  std::vector<const VarImpl*> outputs_;
  int64_t hidden_outputs_ = 0;
  std::vector<const Node*> nodes_;  // in recording order
  std::unordered_set<const Node*> node_seen_;
  std::unordered_map<const Node*, size_t> node_rank_;
  std::unordered_map<uint64_t, const Node*> by_sequence_;
  std::vector<const VarImpl*> leaves_;  // in order of first use
  std::unordered_map<const VarImpl*, LeafInfo> leaf_info_;
  std::unordered_map<const VarImpl*, ValueSummary> summaries_;

  std::vector<CollapsedScope> groups_;
  std::unordered_map<const Node*, int> group_cache_;
  std::set<std::pair<const VarImpl*, int>> entered_;

  std::vector<Cluster> clusters_{Cluster{}};  // [0] is the graph itself
  std::map<std::tuple<size_t, ClusterKind, std::string>, size_t> cluster_index_;
  std::vector<std::string> edges_;
  int64_t total_parameters_ = 0;
};

}  // namespace

std::string to_dot(const std::vector<Var>& outputs, const DotOptions& options) {
  for (size_t i = 0; i < outputs.size(); ++i)
    if (!outputs[i].defined()) fail("to_dot: output {} is an undefined Var", i);
  return DotWriter(outputs, options).write();
}

namespace {

// Writes bytes to a file, with an error naming the caller, the path and the reason.
void write_file(const char* who, const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  if (!out)
    fail("{}: cannot open '{}' for writing ({}); check that the folder exists and is writable", who,
         path, std::strerror(errno));
  out << bytes;
  if (!out.flush()) fail("{}: writing '{}' failed ({})", who, path, std::strerror(errno));
}

}  // namespace

void write_dot(const std::vector<Var>& outputs, const std::string& path,
               const DotOptions& options) {
  write_file("write_dot", path, to_dot(outputs, options));
}

void render(const std::vector<Var>& outputs, const std::string& path, const DotOptions& options) {
  const size_t dot = path.find_last_of('.');
  const size_t slash = path.find_last_of('/');
  std::string extension = dot == std::string::npos || (slash != std::string::npos && dot < slash)
                              ? ""
                              : path.substr(dot + 1);
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (extension != "svg" && extension != "png" && extension != "dot")
    fail(
        "render: cannot tell the format of '{}' from its extension{}; use .svg or .png (or .dot "
        "for "
        "the DOT text)",
        path, extension.empty() ? "" : " '." + extension + "'");
  const std::string text = to_dot(outputs, options);
  write_file("render", path, extension == "dot" ? text : render_dot(text, extension));
}

}  // namespace dg
