// dg dot: draws the graph of a reference-case file (tests/data/reference/FORMAT.md) or of an ONNX
// model, so any graph in those formats can be looked at without writing C++.
//
//   dg dot CASE.json|MODEL.onnx [-o OUT.svg|OUT.png|OUT.dot] [--backward[=beside|merged]] [--stats]
//          [--lr]
//
// An ONNX model is imported and run once on zeros of its inputs' declared shapes (free sizes 1),
// recorded, and drawn as deltagraph draws its own graphs: the deltagraph ops each ONNX node became,
// the initializers as parameters, every value named as in the file.
// Case files have no name scopes, so the scope options of DotOptions have nothing to act on.
#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fmt/core.h>

#include "commands.h"
#include "deltagraph/deltagraph.h"
#include "deltagraph/diagnostics/cases.h"

namespace dg::cli {

namespace {

constexpr const char* kUsage =
    "usage: dg dot CASE.json|MODEL.onnx [-o OUT.svg|OUT.png|OUT.dot] [--backward[=beside|merged]] "
    "[--stats] "
    "[--lr]\n"
    "  without -o, the DOT text goes to standard output";

struct DotArguments {
  std::string case_path;
  std::string output_path;  // empty: DOT text on stdout
  DotOptions options;
  bool help = false;
};

DotArguments parse_arguments(const std::vector<std::string>& args) {
  DotArguments parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* option) -> const std::string& {
      if (i + 1 >= args.size()) fail("{} needs a value\n{}", option, kUsage);
      return args[++i];
    };
    if (a == "-o" || a == "--output")
      parsed.output_path = value("-o");
    else if (a == "--backward" || a == "--backward=beside")
      parsed.options.backward = BackwardGraph::beside;
    else if (a == "--backward=merged")
      parsed.options.backward = BackwardGraph::merged;
    else if (a == "--stats")
      parsed.options.stats = true;
    else if (a == "--lr")
      parsed.options.left_to_right = true;
    else if (a == "-h" || a == "--help")
      parsed.help = true;
    else if (!a.empty() && a[0] == '-')
      fail("unknown option '{}'\n{}", a, kUsage);
    else if (parsed.case_path.empty())
      parsed.case_path = a;
    else
      fail("one case file at a time (got '{}' and '{}')\n{}", parsed.case_path, a, kUsage);
  }
  if (parsed.case_path.empty() && !parsed.help) fail("no case or model file given\n{}", kUsage);
  return parsed;
}

// The values a case's graph ends in: those it seeds the backward pass with, in file order, or,
// if it names none, every node output that no later node uses.
std::vector<std::string> output_names(const Case& c) {
  std::vector<std::string> names;
  for (const NamedTensor& cot : c.cotangents) names.push_back(cot.name);
  if (!names.empty()) return names;
  std::unordered_set<std::string> used;
  for (const CaseNode& node : c.nodes) used.insert(node.inputs.begin(), node.inputs.end());
  for (const CaseNode& node : c.nodes)
    for (const std::string& out : node.outputs)
      if (!used.count(out)) names.push_back(out);
  return names;
}

int draw(const std::vector<Var>& outputs, DotArguments& parsed, const std::string& title) {
  parsed.options.title = title;
  if (parsed.output_path.empty()) {
    fmt::print("{}", to_dot(outputs, parsed.options));
    return 0;
  }
  render(outputs, parsed.output_path, parsed.options);
  fmt::print("{}: graph written to {}\n", title, parsed.output_path);
  return 0;
}

int draw_onnx(DotArguments& parsed) {
  const OnnxModel model = load_onnx(parsed.case_path);
  Tape tape;
  std::vector<Var> inputs;
  // Float inputs as variables, so that every op on them is recorded and drawn.
  for (const Var& v : model.example_inputs())
    inputs.push_back(is_floating(v.dtype()) ? variable(v.value(), v.name()) : v);
  std::vector<Var> outputs = model(inputs);
  if (parsed.options.backward != BackwardGraph::hidden) {
    // The backward pass of the sum of every differentiable output, into the parameters.
    std::vector<Var> differentiable, cotangents, params;
    for (const Var& o : outputs)
      if (o.requires_grad()) {
        differentiable.push_back(o);
        cotangents.push_back(constant(Tensor::ones(o.shape(), o.dtype()), "ones"));
      }
    for (const NamedParam& p : model.params) params.push_back(p.param);
    if (!differentiable.empty() && !params.empty()) {
      std::vector<Var> grads = grad(differentiable, params, cotangents, {.create_graph = true});
      for (size_t i = 0; i < grads.size(); ++i)
        if (grads[i].defined()) outputs.push_back(grads[i].named("grad of " + params[i].name()));
    }
  }
  const std::string name = model.graph_name.empty() ? parsed.case_path : model.graph_name;
  return draw(outputs, parsed, fmt::format("{} (ONNX, opset {})", name, model.opset));
}

}  // namespace

int dot_command(const std::vector<std::string>& args) {
  DotArguments parsed = parse_arguments(args);
  if (parsed.help) {
    fmt::print("{}\n", kUsage);
    return 0;
  }
  if (parsed.case_path.size() > 5 &&
      parsed.case_path.compare(parsed.case_path.size() - 5, 5, ".onnx") == 0)
    return draw_onnx(parsed);
  const Case c = read_case(parsed.case_path);

  // Records the case as run_case does, keeping the file's names on every value.
  Tape tape;
  std::unordered_map<std::string, Var> values;
  std::vector<Var> differentiated;
  for (const CaseInput& in : c.inputs) {
    Var v = in.requires_grad ? variable(in.value, in.name) : input(in.value, in.name);
    values.emplace(in.name, v);
    if (in.requires_grad) differentiated.push_back(v);
  }
  for (size_t i = 0; i < c.nodes.size(); ++i) {
    const CaseNode& node = c.nodes[i];
    std::vector<Var> node_inputs;
    for (const std::string& name : node.inputs) node_inputs.push_back(values.at(name));
    std::vector<Var> outs;
    try {
      outs = call(node.op, std::move(node_inputs), node.attrs);
    } catch (const Error& e) {
      fail("{}: nodes[{}] ({}) cannot run: {}", parsed.case_path, i, node.op, e.what());
    }
    if (outs.size() != node.outputs.size())
      fail("{}: nodes[{}] ({}) produced {} outputs but the case names {}", parsed.case_path, i,
           node.op, outs.size(), node.outputs.size());
    for (size_t k = 0; k < outs.size(); ++k)
      values.emplace(node.outputs[k], outs[k].named(node.outputs[k]));
  }

  std::vector<Var> outputs;
  for (const std::string& name : output_names(c)) outputs.push_back(values.at(name));
  if (parsed.options.backward != BackwardGraph::hidden) {
    const bool differentiable =
        std::any_of(outputs.begin(), outputs.end(), [](const Var& v) { return v.requires_grad(); });
    if (differentiated.empty() || !differentiable) {
      fmt::print(stderr, "dg dot: {} differentiates nothing; drawing the forward graph only\n",
                 parsed.case_path);
    } else {
      std::vector<Var> cotangents;
      for (const NamedTensor& cot : c.cotangents)
        cotangents.push_back(constant(cot.value, "cotangent of " + cot.name));
      // create_graph records the backward pass, which is what gets drawn.
      std::vector<Var> grads = grad(outputs, differentiated, cotangents, {.create_graph = true});
      for (size_t i = 0; i < grads.size(); ++i)
        outputs.push_back(grads[i].named("grad of " + differentiated[i].name()));
    }
  }

  return draw(outputs, parsed, c.name);
}

}  // namespace dg::cli
