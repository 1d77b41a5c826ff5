// ONNX export: a recorded forward graph written as an ONNX model (opset 13+).
//
// The exporter walks the recorded nodes behind the outputs in recording order and writes each
// deltagraph op as one or a few ONNX nodes (kExporters). Leaves become graph inputs (dg::input and
// dg::variable) or initializers (parameters, constants, and every value computed without being
// recorded, which is a constant of the graph). The inference graph is written: batch norm with
// its running statistics, dropout as the identity.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "deltagraph/core/graph.h"
#include "model.h"

namespace dg {

namespace {

class Exporter {
 public:
  Exporter(const OnnxExportOptions& options) : options_(options) {
    if (options.opset < 13 || options.opset > 17)
      fail("export_onnx: opset {} (deltagraph writes opset 13 to 17)", options.opset);
    model_.set_ir_version(8);
    model_.set_producer_name("deltagraph");
    model_.set_producer_version("0.1.0");
    auto* opset = model_.add_opset_import();
    opset->set_domain("");
    opset->set_version(options.opset);
    graph_ = model_.mutable_graph();
    graph_->set_name(options.graph_name);
  }

  std::string run(const std::vector<Var>& outputs) {
    for (size_t k = 0; k < outputs.size(); ++k)
      if (!outputs[k].defined()) fail("export_onnx: output {} is undefined", k);
    for (size_t k = 0; k < options_.inputs.size(); ++k) {
      if (!options_.inputs[k].defined() || !is_input(options_.inputs[k]))
        fail("export_onnx: options.inputs[{}] is not a dg::input or dg::variable leaf", k);
      name_of(options_.inputs[k]);  // declared first, in the order given
    }
    // Every recorded node the outputs depend on, in recording order.
    std::vector<const Node*> nodes;
    std::unordered_set<const Node*> seen;
    std::vector<const Node*> stack;
    for (const Var& v : outputs)
      if (v.producer() && seen.insert(v.producer()).second) stack.push_back(v.producer());
    while (!stack.empty()) {
      const Node* n = stack.back();
      stack.pop_back();
      if (n->values_freed())
        fail(
            "export_onnx: the values of '{}' were freed by a backward pass; export before "
            "backward(), or from a fresh forward pass",
            n->op->name);
      nodes.push_back(n);
      for (const Var& in : n->inputs)
        if (in.producer() && seen.insert(in.producer()).second) stack.push_back(in.producer());
    }
    std::sort(nodes.begin(), nodes.end(),
              [](const Node* a, const Node* b) { return a->sequence < b->sequence; });
    for (const Node* n : nodes) {
      if (n->backward.in_backward_pass)
        fail("export_onnx: '{}' was recorded by a backward pass; export the forward outputs",
             n->op->name);
      emit(*n);
    }
    for (size_t k = 0; k < outputs.size(); ++k) {
      std::string name = name_of(outputs[k]);
      if (outputs[k].producer() == nullptr && !is_input(outputs[k]))
        name = identity(name);  // an output must be some node's output or a graph input
      declare(graph_->add_output(), name, outputs[k]);
    }
    if (graph_->input_size() == 0)
      fail(
          "export_onnx: no graph input reaches the outputs: record the forward pass under a "
          "dg::Tape with the inputs made by dg::input or dg::variable (values computed without "
          "recording are constants of the graph)");
    std::string bytes;
    if (!model_.SerializeToString(&bytes)) fail("export_onnx: the model could not be serialized");
    return bytes;
  }

  // ---- names --------------------------------------------------------------------------------

  static bool is_input(const Var& v) {
    return v.producer() == nullptr && v.kind() == VarKind::input;
  }

  std::string fresh(const std::string& base) {
    std::string name = base.empty() ? "v" : base;
    for (int k = 1; !used_.insert(name).second; ++k) name = fmt::format("{}_{}", base, k);
    return name;
  }

  void declare(onnx::ValueInfoProto* info, const std::string& name, const Var& v) {
    info->set_name(name);
    auto* tensor = info->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx_detail::onnx_elem_type(v.dtype()));
    auto* shape = tensor->mutable_shape();
    for (int a = 0; a < v.dim(); ++a) {
      auto* d = shape->add_dim();
      if (a == 0 && options_.free_batch)
        d->set_dim_param("N");
      else
        d->set_dim_value(v.size(a));
    }
  }

  // The ONNX name of a value; leaves are declared on first use.
  std::string name_of(const Var& v) {
    auto it = names_.find(v.impl());
    if (it != names_.end()) return it->second;
    std::string name;
    if (v.producer()) {
      name = fresh(v.name().empty()
                       ? fmt::format("{}_{}", v.producer()->op->name, v.producer()->sequence)
                       : v.name());
    } else if (is_input(v)) {
      name = fresh(v.name().empty() ? fmt::format("input{}", graph_->input_size()) : v.name());
      declare(graph_->add_input(), name, v);
    } else {
      name = fresh(v.name().empty() ? "const" : v.name());
      onnx_detail::tensor_to_proto(v.value(), name, *graph_->add_initializer());
    }
    names_[v.impl()] = name;
    return name;
  }

  // A value the exporter itself needs (a scalar, a shape, pads) as a Constant node rather than an
  // initializer: importers, deltagraph's included, take float initializers for trainable weights.
  std::string constant(const Tensor& t, const std::string& base) {
    const std::string name = fresh(base);
    onnx::NodeProto* n = graph_->add_node();
    n->set_op_type("Constant");
    n->set_name(fresh(name + "_constant"));
    n->add_output(name);
    auto* a = n->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    onnx_detail::tensor_to_proto(t, name, *a->mutable_t());
    return name;
  }
  std::string ints_constant(const std::vector<int64_t>& v, const std::string& base) {
    return constant(Tensor::from(v, Shape{static_cast<int64_t>(v.size())}), base);
  }

  // ---- nodes --------------------------------------------------------------------------------

  onnx::NodeProto* node(const std::string& op_type, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const Node& origin) {
    onnx::NodeProto* n = graph_->add_node();
    n->set_op_type(op_type);
    n->set_name(fresh(fmt::format("{}_{}", origin.op->name, origin.sequence)));
    for (const std::string& i : inputs) n->add_input(i);
    for (const std::string& o : outputs) n->add_output(o);
    return n;
  }
  std::string identity(const std::string& from) {
    onnx::NodeProto* n = graph_->add_node();
    n->set_op_type("Identity");
    n->add_input(from);
    const std::string out = fresh(from + "_out");
    n->add_output(out);
    return out;
  }
  static void attr(onnx::NodeProto* n, const char* name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto* n, const char* name, double v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }
  static void attr(onnx::NodeProto* n, const char* name, const std::string& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  static void attr(onnx::NodeProto* n, const char* name, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }

  // The outputs of a recorded node, named.
  std::vector<std::string> outputs_of(const Node& n) {
    std::vector<std::string> out;
    for (size_t k = 0; k < n.outputs.size(); ++k)
      out.push_back(name_of(const_cast<Node&>(n).output(static_cast<int>(k))));
    return out;
  }
  std::string in(const Node& n, size_t k) { return name_of(n.inputs[k]); }

  // deltagraph's [top, bottom, left, right] as ONNX's [x1_begin, x2_begin, x1_end, x2_end].
  static std::vector<int64_t> onnx_pads(const Attrs& a, const char* name, Pair kernel,
                                        Pair dilation) {
    const Padding p = a.padding(name).resolved(kernel, dilation);
    return {p.top, p.left, p.bottom, p.right};
  }
  static std::vector<int64_t> pair(const Attrs& a, const char* name) {
    const Pair p = a.pair(name);
    return {p.h, p.w};
  }
  // Pooling's stride 0 means the kernel.
  static std::vector<int64_t> pool_stride(const Attrs& a) {
    Pair s = a.pair("stride");
    const Pair k = a.pair("kernel_size");
    if (s.h == 0) s = k;
    return {s.h, s.w};
  }

  void conv(const Node& n, const char* op_type, bool transposed) {
    const Attrs& a = n.attrs;
    const Shape& w = n.inputs[1].shape();
    std::vector<std::string> inputs = {in(n, 0), in(n, 1)};
    if (n.inputs.size() > 2) inputs.push_back(in(n, 2));
    onnx::NodeProto* node = this->node(op_type, inputs, outputs_of(n), n);
    attr(node, "kernel_shape", std::vector<int64_t>{w[2], w[3]});
    if (n.op->name == "conv1x1") return;
    attr(node, "strides", pair(a, "stride"));
    attr(node, "dilations", pair(a, "dilation"));
    attr(node, "group", a.integer("groups"));
    attr(node, "pads", onnx_pads(a, "padding", Pair{w[2], w[3]}, a.pair("dilation")));
    if (transposed) attr(node, "output_padding", pair(a, "output_padding"));
  }

  void emit(const Node& n) {
    const std::string& op = n.op->name;
    const Attrs& a = n.attrs;
    auto simple = [&](const char* op_type) {
      std::vector<std::string> inputs;
      for (size_t k = 0; k < n.inputs.size(); ++k) inputs.push_back(in(n, k));
      return node(op_type, inputs, outputs_of(n), n);
    };
    if (op == "conv2d" || op == "conv1x1") return conv(n, "Conv", false);
    if (op == "conv_transpose2d") return conv(n, "ConvTranspose", true);
    if (op == "relu") return void(simple("Relu"));
    if (op == "sigmoid") return void(simple("Sigmoid"));
    if (op == "tanh") return void(simple("Tanh"));
    if (op == "exp") return void(simple("Exp"));
    if (op == "log") return void(simple("Log"));
    if (op == "neg") return void(simple("Neg"));
    if (op == "add") return void(simple("Add"));
    if (op == "sub") return void(simple("Sub"));
    if (op == "mul") return void(simple("Mul"));
    if (op == "div") return void(simple("Div"));
    if (op == "elu") return attr(simple("Elu"), "alpha", a.real("alpha"));
    if (op == "leaky_relu") return attr(simple("LeakyRelu"), "alpha", a.real("negative_slope"));
    if (op == "softmax") return attr(simple("Softmax"), "axis", a.integer("axis"));
    if (op == "log_softmax") return attr(simple("LogSoftmax"), "axis", a.integer("axis"));
    if (op == "add_scalar" || op == "mul_scalar") {
      const std::string c = constant(Tensor::scalar(a.real("c"), n.inputs[0].dtype()),
                                     op == "add_scalar" ? "c_add" : "c_mul");
      node(op == "add_scalar" ? "Add" : "Mul", {in(n, 0), c}, outputs_of(n), n);
      return;
    }
    if (op == "bias_add") {  // b [C] over axis 1 of [N,C] or [N,C,H,W]
      std::string b = in(n, 1);
      if (n.inputs[0].dim() == 4) {
        const std::string shape = ints_constant({1, -1, 1, 1}, "bias_shape");
        const std::string reshaped = fresh(b + "_nchw");
        node("Reshape", {b, shape}, {reshaped}, n);
        b = reshaped;
      }
      node("Add", {in(n, 0), b}, outputs_of(n), n);
      return;
    }
    if (op == "linear") {
      onnx::NodeProto* g = simple("Gemm");
      attr(g, "transB", int64_t{1});
      return;
    }
    if (op == "matmul") {
      onnx::NodeProto* g = simple("Gemm");
      attr(g, "transA", int64_t{a.boolean("transpose_a")});
      attr(g, "transB", int64_t{a.boolean("transpose_b")});
      return;
    }
    if (op == "max_pool2d") {
      const Pair k = a.pair("kernel_size");
      // The indices leave as ONNX's flat NCHW positions; only MaxUnpool may read them.
      onnx::NodeProto* m = simple("MaxPool");
      flat_indices_.insert(m->output(1));
      attr(m, "kernel_shape", std::vector<int64_t>{k.h, k.w});
      attr(m, "strides", pool_stride(a));
      attr(m, "pads", onnx_pads(a, "padding", k, a.pair("dilation")));
      attr(m, "dilations", pair(a, "dilation"));
      attr(m, "ceil_mode", int64_t{a.boolean("ceil_mode")});
      return;
    }
    if (op == "max_unpool2d") {
      const Pair k = a.pair("kernel_size");
      const std::vector<int64_t> s = pool_stride(a);
      const Padding p = a.padding("padding").resolved(k);
      const Shape& x = n.inputs[0].shape();
      const Shape& y = n.outputs[0].value.shape();
      // ONNX reads the indices as positions in the size the windows imply; exported only where
      // that is the size deltagraph unpools to (runtimes disagree about other output shapes).
      const int64_t implied_h = (x[2] - 1) * s[0] - p.top - p.bottom + k.h;
      const int64_t implied_w = (x[3] - 1) * s[1] - p.left - p.right + k.w;
      if (implied_h != y[2] || implied_w != y[3])
        fail(
            "export_onnx: max_unpool2d to [{}, {}], where its windows imply [{}, {}]: ONNX's "
            "MaxUnpool reads indices as positions in the implied size, so this one has no ONNX "
            "form",
            y[2], y[3], implied_h, implied_w);
      const std::string i = in(n, 1);
      if (!flat_indices_.count(i))
        fail(
            "export_onnx: max_unpool2d's indices must come from a max_pool2d in the exported "
            "graph (ONNX's are flat NCHW positions, deltagraph's per plane)");
      onnx::NodeProto* u = node("MaxUnpool", {in(n, 0), i}, outputs_of(n), n);
      attr(u, "kernel_shape", std::vector<int64_t>{k.h, k.w});
      attr(u, "strides", s);
      attr(u, "pads", std::vector<int64_t>{p.top, p.left, p.bottom, p.right});
      return;
    }
    if (op == "avg_pool2d") {
      const Pair k = a.pair("kernel_size");
      onnx::NodeProto* m = simple("AveragePool");
      attr(m, "kernel_shape", std::vector<int64_t>{k.h, k.w});
      attr(m, "strides", pool_stride(a));
      attr(m, "pads", onnx_pads(a, "padding", k, Pair{1, 1}));
      attr(m, "ceil_mode", int64_t{a.boolean("ceil_mode")});
      attr(m, "count_include_pad", int64_t{a.boolean("count_include_pad")});
      return;
    }
    if (op == "adaptive_avg_pool2d") {
      const Pair o = a.pair("output_size");
      if (o.h == 1 && o.w == 1) return void(simple("GlobalAveragePool"));
      const Shape& x = n.inputs[0].shape();
      if (x[2] % o.h || x[3] % o.w)
        fail(
            "export_onnx: adaptive_avg_pool2d from {} to [{}, {}] (ONNX has it only where the "
            "cells are equal windows)",
            x, o.h, o.w);
      onnx::NodeProto* m = simple("AveragePool");
      attr(m, "kernel_shape", std::vector<int64_t>{x[2] / o.h, x[3] / o.w});
      attr(m, "strides", std::vector<int64_t>{x[2] / o.h, x[3] / o.w});
      return;
    }
    if (op == "batch_norm2d") {  // inference: the running statistics
      onnx::NodeProto* b = simple("BatchNormalization");
      attr(b, "epsilon", a.real("eps"));
      attr(b, "momentum", 1.0 - a.real("momentum"));
      return;
    }
    if (op == "dropout") {  // the inference graph
      node("Identity", {in(n, 0)}, outputs_of(n), n);
      return;
    }
    if (op == "flatten") {
      attr(node("Flatten", {in(n, 0)}, outputs_of(n), n), "axis", int64_t{1});
      return;
    }
    if (op == "reshape") {
      Ints target = a.ints("shape");
      std::vector<int64_t> v(target.begin(), target.end());
      // With a free batch, a target that keeps axis 0 says so (0: copy the input's size).
      if (options_.free_batch && !v.empty() && n.inputs[0].dim() > 0 &&
          v[0] == n.inputs[0].size(0) && n.outputs[0].value.size(0) == n.inputs[0].size(0))
        v[0] = 0;
      node("Reshape", {in(n, 0), ints_constant(v, "shape")}, outputs_of(n), n);
      return;
    }
    if (op == "permute") {
      const Ints d = a.ints("dims");
      attr(simple("Transpose"), "perm", std::vector<int64_t>(d.begin(), d.end()));
      return;
    }
    if (op == "cat") return attr(simple("Concat"), "axis", a.integer("axis"));
    if (op == "sum" || op == "mean") {
      const Ints axes = a.ints("axes");
      std::vector<int64_t> v(axes.begin(), axes.end());
      if (v.empty())
        for (int k = 0; k < n.inputs[0].dim(); ++k) v.push_back(k);
      onnx::NodeProto* r;
      if (op == "sum") {
        r = node("ReduceSum", {in(n, 0), ints_constant(v, "axes")}, outputs_of(n), n);
      } else {
        r = node("ReduceMean", {in(n, 0)}, outputs_of(n), n);
        attr(r, "axes", v);
      }
      attr(r, "keepdims", int64_t{a.boolean("keepdims")});
      return;
    }
    if (op == "pad2d") {
      const Ints p = a.ints("pads");  // [left, right, top, bottom]
      const int rank = n.inputs[0].dim();
      std::vector<int64_t> pads(2 * rank, 0);
      pads[rank - 2] = p[2];
      pads[rank - 1] = p[0];
      pads[2 * rank - 2] = p[3];
      pads[2 * rank - 1] = p[1];
      std::string mode = a.string("mode");
      if (mode == "replicate") mode = "edge";
      const std::string value =
          constant(Tensor::scalar(a.real("value"), n.inputs[0].dtype()), "pad_value");
      attr(node("Pad", {in(n, 0), ints_constant(pads, "pads"), value}, outputs_of(n), n), "mode",
           mode);
      return;
    }
    if (op == "upsample_nearest2d" || op == "upsample_bilinear2d") {
      const Shape& x = n.inputs[0].shape();
      const Shape& y = n.outputs[0].value.shape();
      const bool bilinear = op == "upsample_bilinear2d";
      const std::string sizes = ints_constant({x[0], x[1], y[2], y[3]}, "sizes");
      if (options_.free_batch && y[2] % x[2] == 0 && y[3] % x[3] == 0) {
        // Scales keep the batch free: whole factors, where ONNX's rules and PyTorch's agree.
        const std::string scales =
            constant(Tensor::from(std::vector<float>{1, 1, static_cast<float>(y[2] / x[2]),
                                                     static_cast<float>(y[3] / x[3])},
                                  Shape{4}),
                     "scales");
        onnx::NodeProto* r = node("Resize", {in(n, 0), "", scales}, outputs_of(n), n);
        resize_attrs(r, bilinear, bilinear && a.boolean("align_corners"));
      } else {
        onnx::NodeProto* r = node("Resize", {in(n, 0), "", "", sizes}, outputs_of(n), n);
        resize_attrs(r, bilinear, bilinear && a.boolean("align_corners"));
      }
      return;
    }
    if (op == "softmax_xent") {
      if (a.real("label_smoothing") != 0)
        fail(
            "export_onnx: softmax_xent with label_smoothing (ONNX's SoftmaxCrossEntropyLoss has "
            "none)");
      if (is_floating(n.inputs[1].dtype()))
        fail("export_onnx: softmax_xent with probability targets (ONNX's takes class indices)");
      onnx::NodeProto* s = simple("SoftmaxCrossEntropyLoss");
      attr(s, "reduction", a.string("reduction"));
      attr(s, "ignore_index", a.integer("ignore_index"));
      return;
    }
    fail(
        "export_onnx: '{}' has no ONNX form in deltagraph's exporter (docs/onnx.md lists the ops "
        "it writes)",
        op);
  }

  static void resize_attrs(onnx::NodeProto* r, bool bilinear, bool align_corners) {
    attr(r, "mode", std::string(bilinear ? "linear" : "nearest"));
    attr(r, "coordinate_transformation_mode",
         std::string(bilinear ? (align_corners ? "align_corners" : "pytorch_half_pixel")
                              : "asymmetric"));
    if (!bilinear) attr(r, "nearest_mode", std::string("floor"));
  }

 private:
  OnnxExportOptions options_;
  onnx::ModelProto model_;
  onnx::GraphProto* graph_ = nullptr;
  std::unordered_map<const VarImpl*, std::string> names_;
  std::set<std::string> used_;
  std::set<std::string> flat_indices_;  // MaxPool Indices outputs (ONNX's flat convention)
};

}  // namespace

std::string export_onnx_bytes(const std::vector<Var>& outputs, const OnnxExportOptions& options) {
  return Exporter(options).run(outputs);
}

void export_onnx_test_folder(const std::vector<Var>& inputs, const std::vector<Var>& outputs,
                             const std::string& folder, OnnxExportOptions options) {
  options.inputs = inputs;
  const std::filesystem::path set = std::filesystem::path(folder) / "test_data_set_0";
  std::filesystem::create_directories(set);
  export_onnx(outputs, (std::filesystem::path(folder) / "model.onnx").string(), options);
  for (size_t k = 0; k < inputs.size(); ++k)
    save_onnx_tensor((set / fmt::format("input_{}.pb", k)).string(), inputs[k].value(),
                     inputs[k].name());
  for (size_t k = 0; k < outputs.size(); ++k)
    save_onnx_tensor((set / fmt::format("output_{}.pb", k)).string(), outputs[k].value(),
                     outputs[k].name());
}

void export_onnx(const std::vector<Var>& outputs, const std::string& path,
                 const OnnxExportOptions& options) {
  const std::string bytes = export_onnx_bytes(outputs, options);
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) fail("export_onnx: cannot write '{}'", path);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!file) fail("export_onnx: writing '{}' failed", path);
}

}  // namespace dg
