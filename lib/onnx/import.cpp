// ONNX import: validation of an untrusted model, and the translation of each ONNX node into
// deltagraph ops, run (and recorded) every time the model is called.
//
// One table (kTranslations) holds, per ONNX op type, the attributes it understands with their
// types, how many inputs and outputs it takes, and the function that computes it with registered
// ops. Validation reads the same table, so a node with an attribute nobody translates is refused
// at load time instead of being silently ignored.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_set>

#include <fmt/format.h>

#include "deltagraph/core/op.h"
#include "deltagraph/core/tape.h"
#include "deltagraph/ops/ops.h"
#include "model.h"

namespace dg {

using onnx_detail::node_label;
using onnx_detail::tensor_from_proto;

namespace {

using AttrKind = onnx::AttributeProto::AttributeType;
constexpr AttrKind kInt = onnx::AttributeProto::INT;
constexpr AttrKind kInts = onnx::AttributeProto::INTS;
constexpr AttrKind kFloat = onnx::AttributeProto::FLOAT;
constexpr AttrKind kFloats = onnx::AttributeProto::FLOATS;
constexpr AttrKind kString = onnx::AttributeProto::STRING;
constexpr AttrKind kTensor = onnx::AttributeProto::TENSOR;

const char* attr_kind_name(int kind) {
  switch (kind) {
    case onnx::AttributeProto::INT:
      return "INT";
    case onnx::AttributeProto::INTS:
      return "INTS";
    case onnx::AttributeProto::FLOAT:
      return "FLOAT";
    case onnx::AttributeProto::FLOATS:
      return "FLOATS";
    case onnx::AttributeProto::STRING:
      return "STRING";
    case onnx::AttributeProto::STRINGS:
      return "STRINGS";
    case onnx::AttributeProto::TENSOR:
      return "TENSOR";
    case onnx::AttributeProto::TENSORS:
      return "TENSORS";
    case onnx::AttributeProto::GRAPH:
      return "GRAPH";
    case onnx::AttributeProto::GRAPHS:
      return "GRAPHS";
    case onnx::AttributeProto::SPARSE_TENSOR:
      return "SPARSE_TENSOR";
    case onnx::AttributeProto::TYPE_PROTO:
      return "TYPE_PROTO";
    default:
      return "UNDEFINED";
  }
}

// A value flowing between nodes. MaxPool's indices stay deltagraph's per-plane positions while
// they flow to MaxUnpool; `plane_of` remembers the pooled input's [N,C,H,W] so that they can be
// made ONNX's flat NCHW positions where anything else reads them.
struct Value {
  Var var;
  Shape plane_of;  // non-empty: var holds per-plane max-pool indices into planes of this shape
};

// ---- index conventions ------------------------------------------------------------------------

// Per-plane positions h*W + w into [N,C,H,W] -> ONNX's flat positions ((n*C + c)*H + h)*W + w.
Tensor plane_to_flat_indices(const Tensor& indices, const Shape& planes) {
  Tensor out = indices.clone();
  const int64_t plane = planes[2] * planes[3];
  const int64_t per_plane =
      indices.numel() / std::max<int64_t>(1, indices.size(0) * indices.size(1));
  int64_t* v = out.data<int64_t>();
  for (int64_t p = 0; p < indices.size(0) * indices.size(1); ++p)
    for (int64_t i = 0; i < per_plane; ++i) v[p * per_plane + i] += p * plane;
  return out;
}

// ONNX's flat positions into an [N,C,H,W] output -> per-plane positions; each must land in its
// own plane.
Tensor flat_to_plane_indices(const Tensor& indices, int64_t plane, const std::string& where) {
  if (indices.dim() != 4) fail("{}: indices must be [N,C,h,w], got {}", where, indices.shape());
  Tensor out = indices.clone();
  const int64_t planes = indices.size(0) * indices.size(1);
  const int64_t per_plane = planes == 0 ? 0 : indices.numel() / planes;
  int64_t* v = out.data<int64_t>();
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < per_plane; ++i) {
      int64_t& x = v[p * per_plane + i];
      if (x < p * plane || x >= (p + 1) * plane)
        fail(
            "{}: index {} at flat position {} is outside its own plane [{}, {}) of the output "
            "(ONNX MaxUnpool indices are flat over the whole NCHW output)",
            where, x, p * per_plane + i, p * plane, (p + 1) * plane);
      x -= p * plane;
    }
  return out;
}

// ---- one node at run time ---------------------------------------------------------------------

struct Translation;

class NodeRun {
 public:
  NodeRun(const onnx::NodeProto& node, std::string label, std::vector<Value> inputs,
          const OnnxModel::Graph& graph)
      : node_(node), label_(std::move(label)), inputs_(std::move(inputs)), graph_(graph) {}

  const std::string& where() const { return label_; }
  int64_t opset() const { return graph_.opset; }
  bool model_training() const { return graph_.training && *graph_.training; }
  const OnnxModel::Graph& graph() const { return graph_; }
  int outputs_wanted() const {
    int n = 0;
    for (int i = 0; i < node_.output_size(); ++i)
      if (!node_.output(i).empty()) n = i + 1;
    return n;
  }

  // Inputs: present when given with a non-empty name.
  bool has(int i) const { return i < static_cast<int>(inputs_.size()) && inputs_[i].var.defined(); }
  const Var& in(int i) const {
    if (!has(i)) fail("{}: input {} is required", label_, i);
    return inputs_[i].var;
  }
  const Value& value(int i) const { return inputs_[i]; }
  // An input as a float input of a deltagraph op (ONNX-flat indices are never one).
  const Var& x(int i) const {
    const Var& v = in(i);
    if (!is_floating(v.dtype()))
      fail<OnnxUnsupported>("{}: input {} is {}; deltagraph computes this op on float32/float64",
                            label_, i, dtype_name(v.dtype()));
    return v;
  }
  // An input's values as integers (shapes, axes, pads given as tensors).
  std::vector<int64_t> int_values(int i) const {
    const Tensor& t = value_of(i).value();
    if (t.dim() > 1) fail("{}: input {} must be a 1-D list, got {}", label_, i, t.shape());
    std::vector<int64_t> out;
    for (int64_t k = 0; k < t.numel(); ++k) out.push_back(static_cast<int64_t>(t.at(k)));
    return out;
  }
  Var value_of(int i) const {
    const Value& v = inputs_.at(i);
    if (!v.plane_of.empty()) return constant(plane_to_flat_indices(v.var.value(), v.plane_of));
    return in(i);
  }

  // Attributes, type-checked at load time (validate_node).
  const onnx::AttributeProto* attr(std::string_view name) const {
    for (const auto& a : node_.attribute())
      if (a.name() == name) return &a;
    return nullptr;
  }
  bool has_attr(std::string_view name) const { return attr(name) != nullptr; }
  int64_t i(std::string_view name, int64_t fallback) const {
    const auto* a = attr(name);
    return a ? a->i() : fallback;
  }
  double f(std::string_view name, double fallback) const {
    const auto* a = attr(name);
    return a ? a->f() : fallback;
  }
  std::string s(std::string_view name, std::string fallback) const {
    const auto* a = attr(name);
    return a ? a->s() : fallback;
  }
  std::vector<int64_t> ints(std::string_view name, std::vector<int64_t> fallback = {}) const {
    const auto* a = attr(name);
    return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : fallback;
  }
  // A pair attribute of a 2-D window op ([h, w]); `fallback` when absent.
  // A pair attribute of a 2-D window op ([h, w]); `fallback` when absent. Given values must be
  // in [lo, 2^20], so that no window arithmetic divides by zero or overflows.
  Ints pair(std::string_view name, int64_t fallback, int64_t lo = 1) const {
    std::vector<int64_t> v = ints(name, {fallback, fallback});
    if (v.size() != 2)
      unsupported(
          "attribute '{}' has {} values; deltagraph's window ops are 2-D (1-D and 3-D "
          "windows are not supported)",
          name, v.size());
    if (has_attr(name))
      for (int64_t x : v)
        if (x < lo || x > kMaxExtent)
          bad("attribute '{}' is [{}]; each value must be in [{}, 2^20]", name, fmt::join(v, ", "),
              lo);
    return Ints{v[0], v[1]};
  }
  // The kernel_shape of a pool: required.
  Ints kernel() const {
    if (!has_attr("kernel_shape")) bad("attribute 'kernel_shape' is required");
    return pair("kernel_shape", 0);
  }
  // Far beyond any real window, and small enough that sizes (< 2^40) times it cannot overflow.
  static constexpr int64_t kMaxExtent = int64_t{1} << 20;

  template <class... Args>
  [[noreturn]] void unsupported(fmt::format_string<Args...> format, Args&&... args) const {
    throw OnnxUnsupported(
        fmt::format("{}: {}", label_, fmt::format(format, std::forward<Args>(args)...)));
  }
  template <class... Args>
  [[noreturn]] void bad(fmt::format_string<Args...> format, Args&&... args) const {
    throw Error(fmt::format("{}: {}", label_, fmt::format(format, std::forward<Args>(args)...)));
  }

  // A deltagraph op by name: the one path every translation takes.
  std::vector<Var> op(std::string_view name, std::vector<Var> inputs,
                      const AttrMap& attrs = {}) const {
    return call(name, std::move(inputs), attrs);
  }
  Var op1(std::string_view name, std::vector<Var> inputs, const AttrMap& attrs = {}) const {
    return call(name, std::move(inputs), attrs)[0];
  }

 private:
  const onnx::NodeProto& node_;
  std::string label_;
  std::vector<Value> inputs_;
  const OnnxModel::Graph& graph_;
};

using TranslateFn = std::function<std::vector<Value>(const NodeRun&)>;

struct AttrRule {
  std::string_view name;
  AttrKind kind;
};

struct Translation {
  std::string_view op_type;
  int min_inputs, max_inputs, max_outputs;
  std::vector<AttrRule> attrs;
  TranslateFn run;
};

std::vector<Value> one(Var v) { return {Value{std::move(v), {}}}; }

// ---- window geometry: ONNX pads and auto_pad -> deltagraph's four-sided padding ----------------

// Pads and sizes: each in [0, 2^20] (see NodeRun::kMaxExtent).
void check_extents(const NodeRun& n, const char* what, const std::vector<int64_t>& values) {
  for (int64_t v : values)
    if (v < 0 || v > NodeRun::kMaxExtent)
      n.bad("{} [{}]: each value must be in [0, 2^20]", what, fmt::join(values, ", "));
}

// ONNX's explicit pads [x1_begin, x2_begin, x1_end, x2_end] (zeros when absent) as deltagraph's
// [top, bottom, left, right].
Ints explicit_pads(const NodeRun& n) {
  const std::vector<int64_t> pads = n.ints("pads", {0, 0, 0, 0});
  if (pads.size() != 4)
    n.unsupported(
        "pads has {} values; deltagraph's window ops are 2-D, with pads [top, left, bottom, "
        "right]",
        pads.size());
  check_extents(n, "pads", pads);
  return Ints{pads[0], pads[2], pads[1], pads[3]};
}

// Appends the two sides of `total` rows (or columns) of padding to `sides`: the odd one at the
// end when `odd_at_end` (SAME_UPPER), at the beginning otherwise (SAME_LOWER, and ConvTranspose's
// output_shape without SAME_UPPER).
void split_padding(int64_t total, bool odd_at_end, Ints& sides) {
  const int64_t small = total / 2, large = total - total / 2;
  sides.push_back(odd_at_end ? small : large);
  sides.push_back(odd_at_end ? large : small);
}

// ONNX's pads [x1_begin, x2_begin, x1_end, x2_end] or auto_pad, for a 2-D window over `size`
// ([H, W]), as deltagraph's [top, bottom, left, right].
Ints window_padding(const NodeRun& n, const Ints& size, const Ints& kernel, const Ints& stride,
                    const Ints& dilation) {
  const std::string auto_pad = n.s("auto_pad", "NOTSET");
  if (auto_pad == "NOTSET") {
    return explicit_pads(n);
  }
  if (auto_pad == "VALID") return Ints{0, 0, 0, 0};
  if (auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER")
    n.bad("auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got '{}'", auto_pad);
  // SAME: the output has ceil(size / stride) positions; the padding that needs is split in two,
  // the odd one at the end (SAME_UPPER) or at the beginning (SAME_LOWER).
  Ints sides;
  for (int a = 0; a < 2; ++a) {
    const int64_t out = (size[a] + stride[a] - 1) / stride[a];
    const int64_t span = (kernel[a] - 1) * dilation[a] + 1;
    split_padding(std::max<int64_t>(0, (out - 1) * stride[a] + span - size[a]),
                  auto_pad == "SAME_UPPER", sides);
  }
  return sides;
}

void require_4d(const NodeRun& n, const Var& x, const char* what) {
  if (x.dim() != 4)
    n.unsupported(
        "{} is {}-D ({}); deltagraph's convolutions and pools work on 2-D planes "
        "[N,C,H,W] (1-D and 3-D ones are not supported)",
        what, x.dim(), x.shape());
}

Ints spatial(const Var& x) { return Ints{x.size(2), x.size(3)}; }

// ---- the translations -------------------------------------------------------------------------

std::vector<Value> conv(const NodeRun& n) {
  const Var& x = n.x(0);
  const Var& w = n.x(1);
  require_4d(n, x, "the input");
  require_4d(n, w, "the weight");
  const Ints kernel = n.pair("kernel_shape", 0);
  if (n.has_attr("kernel_shape") && (kernel[0] != w.size(2) || kernel[1] != w.size(3)))
    n.bad("kernel_shape [{}, {}] does not match the weight {}", kernel[0], kernel[1], w.shape());
  const Ints stride = n.pair("strides", 1), dilation = n.pair("dilations", 1);
  const Ints padding = window_padding(n, spatial(x), Ints{w.size(2), w.size(3)}, stride, dilation);
  std::vector<Var> inputs = {x, w};
  if (n.has(2)) inputs.push_back(n.x(2));
  return one(n.op1("conv2d", inputs,
                   {{"stride", stride},
                    {"padding", padding},
                    {"dilation", dilation},
                    {"groups", n.i("group", 1)}}));
}

std::vector<Value> conv_transpose(const NodeRun& n) {
  const Var& x = n.x(0);
  const Var& w = n.x(1);
  require_4d(n, x, "the input");
  require_4d(n, w, "the weight");
  const Ints stride = n.pair("strides", 1), dilation = n.pair("dilations", 1);
  Ints output_padding = n.pair("output_padding", 0, 0);
  const Ints kernel{w.size(2), w.size(3)};
  const std::string auto_pad = n.s("auto_pad", "NOTSET");
  Ints padding;
  std::vector<int64_t> output_shape = n.ints("output_shape");
  if (output_shape.size() > 2) output_shape.erase(output_shape.begin(), output_shape.end() - 2);
  check_extents(n, "output_shape", output_shape);
  if (output_shape.empty() && (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER"))
    output_shape = {x.size(2) * stride[0], x.size(3) * stride[1]};
  if (!output_shape.empty()) {
    if (output_shape.size() != 2) n.unsupported("output_shape must give [H, W]");
    // output_shape implies the padding: total = stride (in - 1) + output_padding + span - out,
    // split with the odd one at the end for SAME_UPPER and at the beginning otherwise.
    for (int a = 0; a < 2; ++a) {
      const int64_t span = (kernel[a] - 1) * dilation[a] + 1;
      int64_t total = stride[a] * (x.size(2 + a) - 1) + output_padding[a] + span - output_shape[a];
      if (total < 0) {  // a larger output than the windows reach: extra rows at the end
        output_padding[a] -= total;
        total = 0;
      }
      split_padding(total, auto_pad == "SAME_UPPER", padding);
    }
  } else if (auto_pad == "VALID") {
    padding = Ints{0, 0, 0, 0};
  } else {
    padding = explicit_pads(n);
  }
  std::vector<Var> inputs = {x, w};
  if (n.has(2)) inputs.push_back(n.x(2));
  return one(n.op1("conv_transpose2d", inputs,
                   {{"stride", stride},
                    {"padding", padding},
                    {"output_padding", output_padding},
                    {"dilation", dilation},
                    {"groups", n.i("group", 1)}}));
}

// PyTorch's pools (and so deltagraph's) take at most half the kernel of padding on a side; ONNX
// allows more. The rest is padded explicitly before the pool: with -inf for a max (where no index
// output is wanted: the indices would count the padded plane), with zeros for a mean whose divisor
// counts the padding, and for one whose divisor does not, as the ratio of two means (of x and of
// ones, both padded with zeros), which is the sum over the real values divided by their count.
bool beyond_half_kernel(const Ints& padding, const Ints& kernel) {
  return padding[0] > kernel[0] / 2 || padding[1] > kernel[0] / 2 || padding[2] > kernel[1] / 2 ||
         padding[3] > kernel[1] / 2;
}
Ints torch_pads(const Ints& padding) {
  return Ints{padding[2], padding[3], padding[0], padding[1]};
}

std::vector<Value> max_pool(const NodeRun& n) {
  const Var& x = n.x(0);
  require_4d(n, x, "the input");
  if (n.i("storage_order", 0) != 0)
    n.unsupported("storage_order 1 (column-major indices); deltagraph's are row-major");
  const Ints kernel = n.kernel();
  const Ints stride = n.pair("strides", 1), dilation = n.pair("dilations", 1);
  const Ints padding = window_padding(n, spatial(x), kernel, stride, dilation);
  if (beyond_half_kernel(padding, kernel)) {
    if (n.outputs_wanted() > 1)
      n.unsupported("pads {} beyond half the kernel with the Indices output", padding);
    const Var padded = n.op1("pad2d", {x}, {{"pads", torch_pads(padding)}, {"value", -INFINITY}});
    return one(n.op("max_pool2d", {padded},
                    {{"kernel_size", kernel},
                     {"stride", stride},
                     {"dilation", dilation},
                     {"ceil_mode", n.i("ceil_mode", 0) != 0}})[0]);
  }
  std::vector<Var> out = n.op("max_pool2d", {x},
                              {{"kernel_size", kernel},
                               {"stride", stride},
                               {"padding", padding},
                               {"dilation", dilation},
                               {"ceil_mode", n.i("ceil_mode", 0) != 0}});
  return {Value{out[0], {}}, Value{out[1], x.shape()}};
}

// MaxUnpool. ONNX's indices are flat positions in the unpooled tensor of the size the windows
// imply ((in - 1) stride - pads + kernel); an output_shape larger than that adds zeros at the
// bottom and right (the indices keep their meaning), as ONNX's reference does. Indices that come
// straight from a MaxPool of this model stay deltagraph's per-plane positions when the output is
// the pooled input's size, which is what max_unpool2d needs.
std::vector<Value> max_unpool(const NodeRun& n) {
  const Var& x = n.x(0);
  require_4d(n, x, "the input");
  const Ints kernel = n.kernel();
  const Ints stride = n.pair("strides", 1);
  const Ints padding = explicit_pads(n);  // [top, bottom, left, right]
  const Ints implied{(x.size(2) - 1) * stride[0] - padding[0] - padding[1] + kernel[0],
                     (x.size(3) - 1) * stride[1] - padding[2] - padding[3] + kernel[1]};
  Ints size = implied;
  if (n.has(2)) {
    const std::vector<int64_t> shape = n.int_values(2);
    if (shape.size() != 4) n.bad("output_shape must be [N, C, H, W], got {} values", shape.size());
    if (shape[0] != x.size(0) || shape[1] != x.size(1))
      n.bad("output_shape [{}] does not keep the input's N and C {}", fmt::join(shape, ", "),
            x.shape());
    check_extents(n, "output_shape", {shape[2], shape[3]});
    size = Ints{shape[2], shape[3]};
  }
  const AttrMap geometry = {{"kernel_size", kernel}, {"stride", stride}, {"padding", padding}};
  auto unpool = [&](const Var& indices, const Ints& out_size) {
    AttrMap attrs = geometry;
    attrs.emplace_back("output_size", out_size);
    return n.op1("max_unpool2d", {x, indices}, attrs);
  };
  const Value& indices = n.value(1);
  if (!indices.plane_of.empty() && indices.plane_of[2] == size[0] && indices.plane_of[3] == size[1])
    return one(unpool(indices.var, size));
  const Var flat = n.value_of(1);
  if (flat.dtype() != DType::i64) n.bad("the indices must be int64");
  if (size[0] < implied[0] || size[1] < implied[1])
    n.unsupported("output_shape [{}, {}] smaller than the windows imply [{}, {}]", size[0], size[1],
                  implied[0], implied[1]);
  Var y = unpool(constant(flat_to_plane_indices(flat.value(), implied[0] * implied[1], n.where())),
                 implied);
  if (size != implied)
    y = n.op1("pad2d", {y}, {{"pads", Ints{0, size[1] - implied[1], 0, size[0] - implied[0]}}});
  return one(y);
}

std::vector<Value> average_pool(const NodeRun& n) {
  const Var& x = n.x(0);
  require_4d(n, x, "the input");
  const Ints kernel = n.kernel();
  const Ints stride = n.pair("strides", 1);
  const Ints padding = window_padding(n, spatial(x), kernel, stride, Ints{1, 1});
  const bool count_pad = n.i("count_include_pad", 0) != 0;
  if (beyond_half_kernel(padding, kernel)) {
    const AttrMap pool = {
        {"kernel_size", kernel}, {"stride", stride}, {"ceil_mode", n.i("ceil_mode", 0) != 0}};
    const Var sums =
        n.op1("avg_pool2d", {n.op1("pad2d", {x}, {{"pads", torch_pads(padding)}})}, pool);
    if (count_pad) return one(sums);
    const Var ones = constant(Tensor::ones(Shape{1, 1, x.size(2), x.size(3)}, x.dtype()));
    const Var counts =
        n.op1("avg_pool2d", {n.op1("pad2d", {ones}, {{"pads", torch_pads(padding)}})}, pool);
    return one(n.op1("div", {sums, counts}));
  }
  return one(n.op1("avg_pool2d", {x},
                   {{"kernel_size", kernel},
                    {"stride", stride},
                    {"padding", padding},
                    {"ceil_mode", n.i("ceil_mode", 0) != 0},
                    {"count_include_pad", count_pad}}));
}

std::vector<Value> global_average_pool(const NodeRun& n) {
  const Var& x = n.x(0);
  if (x.dim() < 3) n.bad("the input must be [N,C,d1,...], got {}", x.shape());
  Ints axes;
  for (int a = 2; a < x.dim(); ++a) axes.push_back(a);
  return one(n.op1("mean", {x}, {{"axes", axes}, {"keepdims", true}}));
}

std::vector<Value> global_max_pool(const NodeRun& n) {
  const Var& x = n.x(0);
  require_4d(n, x, "the input");
  return one(n.op("max_pool2d", {x}, {{"kernel_size", spatial(x)}})[0]);
}

// BatchNormalization. Inference (the default, and evaluation mode): the given statistics.
// Training (training_mode = 1, or the model in training mode): batch statistics; the model's own
// buffers are updated as PyTorch does, and the optional outputs running_mean and running_var are
// ONNX's: momentum weighs the old value, the batch variance is the biased one.
std::vector<Value> batch_normalization(const NodeRun& n) {
  const Var& x0 = n.x(0);
  if (x0.dim() < 2 || x0.dim() > 4)
    n.unsupported("input {} is not [N,C], [N,C,L] or [N,C,H,W]", x0.shape());
  Var x = x0;
  if (x0.dim() < 4) {
    Ints shape = x0.shape();
    while (shape.size() < 4) shape.push_back(1);
    x = n.op1("reshape", {x0}, {{"shape", shape}});
  }
  const double momentum = n.f("momentum", 0.9);
  const double eps = n.f("epsilon", 1e-5);
  const bool training =
      (n.i("training_mode", 0) != 0 || n.model_training()) && n.i("is_test", 0) == 0;
  if (n.i("spatial", 1) != 1)
    n.unsupported("spatial = 0 (statistics per position, not per channel)");
  Var mean = n.x(3), var = n.x(4);
  std::vector<Value> out;
  if (training && n.outputs_wanted() > 1) {
    // ONNX's running statistics from the batch (not differentiable: computed from the values).
    NoGrad no_grad;
    const Var batch_mean = n.op1("mean", {x}, {{"axes", Ints{0, 2, 3}}});
    const Var centred =
        n.op1("sub", {x, n.op1("reshape", {batch_mean}, {{"shape", Ints{1, -1, 1, 1}}})});
    const Var batch_var =
        n.op1("mean", {n.op1("mul", {centred, centred})}, {{"axes", Ints{0, 2, 3}}});
    auto blend = [&](const Var& old, const Var& batch) {
      return n.op1("add", {n.op1("mul_scalar", {old}, {{"c", momentum}}),
                           n.op1("mul_scalar", {batch}, {{"c", 1 - momentum}})});
    };
    out = {Value{}, Value{blend(mean, batch_mean), {}}, Value{blend(var, batch_var), {}}};
  }
  if (training) {
    // Our op updates the statistics it is given in place: a model's buffers should be, a graph
    // input should not.
    auto owned = [&](const Var& v) {
      for (const auto& [name, init] : n.graph().initializers)
        if (init.impl() == v.impl()) return v;
      return constant(v.value().clone());
    };
    mean = owned(mean);
    var = owned(var);
  }
  Var y = n.op1("batch_norm2d", {x, n.x(1), n.x(2), mean, var},
                {{"training", training}, {"momentum", 1 - momentum}, {"eps", eps}});
  if (x0.dim() < 4) y = n.op1("reshape", {y}, {{"shape", x0.shape()}});
  if (out.empty()) return one(y);
  out[0].var = y;
  return out;
}

std::vector<Value> gemm(const NodeRun& n) {
  Var y = n.op1("matmul", {n.x(0), n.x(1)},
                {{"transpose_a", n.i("transA", 0) != 0}, {"transpose_b", n.i("transB", 0) != 0}});
  const double alpha = n.f("alpha", 1.0), beta = n.f("beta", 1.0);
  if (alpha != 1.0) y = n.op1("mul_scalar", {y}, {{"c", alpha}});
  if (n.has(2) && beta != 0.0) {
    Var c = n.x(2);
    if (beta != 1.0) c = n.op1("mul_scalar", {c}, {{"c", beta}});
    y = n.op1("add", {y, c});
  }
  return one(y);
}

std::vector<Value> matmul(const NodeRun& n) {
  const Var& a = n.x(0);
  const Var& b = n.x(1);
  if (a.dim() == 2 && b.dim() == 2) return one(n.op1("matmul", {a, b}));
  if (a.dim() > 2 && b.dim() == 2) {  // [..., K] @ [K, M]: one matrix product over the rows
    Ints rows = a.shape();
    rows[rows.size() - 1] = b.size(1);
    const Var flat = n.op1("reshape", {a}, {{"shape", Ints{-1, a.size(-1)}}});
    return one(n.op1("reshape", {n.op1("matmul", {flat, b})}, {{"shape", rows}}));
  }
  n.unsupported(
      "MatMul of {} and {}: deltagraph's matmul is 2-D ([..., K] @ [K, M] is "
      "supported; batched and 1-D products are not)",
      a.shape(), b.shape());
}

// Before opset 7, broadcasting was asked for (broadcast = 1) and b could be aligned to a's axis
// `axis` instead of to the trailing axes.
std::vector<Value> binary(const NodeRun& n, const char* op) {
  const Var& a = n.x(0);
  Var b = n.x(1);
  if (n.has_attr("axis") && n.i("broadcast", 0) != 0 && b.dim() < a.dim()) {
    int64_t axis = n.i("axis", 0);
    if (axis < 0) axis += a.dim();
    if (axis < 0 || axis + b.dim() > a.dim())
      n.bad("axis {} does not fit b {} into a {}", n.i("axis", 0), b.shape(), a.shape());
    Ints shape;
    for (int64_t k = 0; k < axis; ++k) shape.push_back(1);
    for (int64_t d : b.shape()) shape.push_back(d);
    while (shape.size() < a.dim()) shape.push_back(1);
    b = n.op1("reshape", {b}, {{"shape", shape}});
  }
  return one(n.op1(op, {a, b}));
}

std::vector<Value> unary(const NodeRun& n, const char* op, const AttrMap& attrs = {}) {
  return one(n.op1(op, {n.x(0)}, attrs));
}

// Softmax and LogSoftmax: one axis from opset 13 on (default -1); before, the input is
// coerced to 2-D [prod(shape[:axis]), prod(shape[axis:])] (default axis 1).
std::vector<Value> softmax(const NodeRun& n, const char* op) {
  const Var& x = n.x(0);
  const int64_t rank = x.dim();
  int64_t axis = n.i("axis", n.opset() >= 13 ? -1 : 1);
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1))
    n.bad("axis {} is out of range for {}", axis, x.shape());
  if (axis < 0) axis += rank;
  if (n.opset() >= 13) return one(n.op1(op, {x}, {{"axis", axis}}));
  int64_t outer = 1;
  for (int64_t a = 0; a < axis; ++a) outer *= x.size(static_cast<int>(a));
  const Var flat = n.op1("reshape", {x}, {{"shape", Ints{outer, -1}}});
  return one(n.op1("reshape", {n.op1(op, {flat}, {{"axis", 1}})}, {{"shape", x.shape()}}));
}

std::vector<Value> flatten(const NodeRun& n) {
  const Var& x = n.in(0);
  const int64_t rank = x.dim();
  int64_t axis = n.i("axis", 1);
  if (axis < -rank || axis > rank) n.bad("axis {} is out of range for {}", axis, x.shape());
  if (axis < 0) axis += rank;
  int64_t outer = 1;
  for (int64_t a = 0; a < axis; ++a) outer *= x.size(static_cast<int>(a));
  int64_t inner = 1;
  for (int64_t a = axis; a < rank; ++a) inner *= x.size(static_cast<int>(a));
  return one(n.op1("reshape", {x}, {{"shape", Ints{outer, inner}}}));
}

std::vector<Value> reshape(const NodeRun& n) {
  const Var& x = n.in(0);
  std::vector<int64_t> target = n.int_values(1);
  const bool allow_zero = n.i("allowzero", 0) != 0;
  if (target.size() > 8) n.unsupported("a target shape of {} axes (at most 8)", target.size());
  Ints shape;
  for (size_t a = 0; a < target.size(); ++a) {
    int64_t d = target[a];
    if (d == 0 && !allow_zero) {  // 0 copies the input's size on that axis
      if (static_cast<int>(a) >= x.dim())
        n.bad("shape entry {} is 0 but the input has {} axes", a, x.dim());
      d = x.size(static_cast<int>(a));
    }
    shape.push_back(d);
  }
  return one(n.op1("reshape", {x}, {{"shape", shape}}));
}

std::vector<Value> transpose(const NodeRun& n) {
  const Var& x = n.in(0);
  std::vector<int64_t> perm = n.ints("perm");
  if (perm.empty())
    for (int64_t a = x.dim() - 1; a >= 0; --a) perm.push_back(a);
  return one(n.op1("permute", {x}, {{"dims", Ints(perm.begin(), perm.end())}}));
}

std::vector<Value> concat(const NodeRun& n) {
  std::vector<Var> inputs;
  for (int k = 0; n.has(k); ++k) inputs.push_back(n.value_of(k));
  if (!n.has_attr("axis")) n.bad("attribute 'axis' is required");
  return one(n.op1("cat", inputs, {{"axis", n.i("axis", 0)}}));
}

std::vector<Value> reduce(const NodeRun& n, const char* op) {
  const Var& x = n.x(0);
  std::vector<int64_t> axes = n.ints("axes");
  if (n.has(1)) axes = n.int_values(1);  // ReduceSum from opset 13: axes as an input
  if (axes.empty() && n.i("noop_with_empty_axes", 0) != 0) return one(x);
  return one(n.op1(
      op, {x}, {{"axes", Ints(axes.begin(), axes.end())}, {"keepdims", n.i("keepdims", 1) != 0}}));
}

std::vector<Value> pad(const NodeRun& n) {
  const Var& x = n.x(0);
  std::vector<int64_t> pads = n.has(1) ? n.int_values(1) : n.ints("pads");
  double value = n.f("value", 0.0);
  if (n.has(2)) value = n.in(2).value().at(0);
  std::string mode = n.s("mode", "constant");
  if (mode == "edge") mode = "replicate";
  if (mode != "constant" && mode != "reflect" && mode != "replicate")
    n.unsupported("mode '{}'", mode);
  const int64_t rank = x.dim();
  if (static_cast<int64_t>(pads.size()) != 2 * rank)
    n.bad("pads has {} values for a {}-D input (2 per axis)", pads.size(), rank);
  if (rank < 2) n.unsupported("padding a {}-D tensor; deltagraph pads the last two axes", rank);
  for (int64_t a = 0; a < rank - 2; ++a)
    if (pads[a] != 0 || pads[rank + a] != 0)
      n.unsupported("padding axis {}; deltagraph's pad2d pads the last two axes only", a);
  for (int64_t p : pads)
    if (p < 0) n.unsupported("negative pads (cropping)");
  check_extents(n, "pads", pads);
  const Ints torch_pads{pads[rank - 1], pads[2 * rank - 1], pads[rank - 2], pads[2 * rank - 2]};
  return one(n.op1("pad2d", {x}, {{"pads", torch_pads}, {"mode", mode}, {"value", value}}));
}

std::vector<Value> softmax_cross_entropy(const NodeRun& n) {
  std::vector<Var> inputs = {n.x(0), n.in(1)};
  if (n.in(1).dtype() != DType::i64) n.bad("the labels must be integers");
  if (n.has(2)) inputs.push_back(n.x(2));
  const std::string reduction = n.s("reduction", "mean");
  Var loss = n.op1("softmax_xent", inputs,
                   {{"reduction", reduction},
                    {"ignore_index", n.i("ignore_index", std::numeric_limits<int64_t>::min())}});
  std::vector<Value> out = one(loss);
  if (n.outputs_wanted() > 1)
    out.push_back(Value{n.op1("log_softmax", {n.x(0)}, {{"axis", 1}}), {}});
  return out;
}

std::vector<Value> dropout(const NodeRun& n) {
  if (n.outputs_wanted() > 1) n.unsupported("the mask output (deltagraph has no boolean tensors)");
  double ratio = n.f("ratio", 0.5);
  if (n.has(1)) ratio = n.in(1).value().at(0);
  bool training = n.model_training();
  if (n.has(2)) training = n.in(2).value().at(0) != 0;
  if (!training) return one(n.in(0));
  const int64_t seed = n.i("seed", 0) + n.graph().dropout_calls.fetch_add(1);
  return one(n.op1("dropout", {n.x(0)}, {{"p", ratio}, {"training", true}, {"seed", seed}}));
}

std::vector<Value> constant_node(const NodeRun& n) {
  if (const auto* a = n.attr("value")) return one(constant(tensor_from_proto(a->t(), n.where())));
  if (const auto* a = n.attr("value_float")) return one(constant(Tensor::scalar(a->f())));
  if (const auto* a = n.attr("value_int"))
    return one(constant(Tensor::scalar(static_cast<double>(a->i()), DType::i64)));
  if (const auto* a = n.attr("value_floats")) {
    std::vector<float> v(a->floats().begin(), a->floats().end());
    return one(constant(Tensor::from(v, Shape{static_cast<int64_t>(v.size())})));
  }
  if (const auto* a = n.attr("value_ints")) {
    std::vector<int64_t> v(a->ints().begin(), a->ints().end());
    return one(constant(Tensor::from(v, Shape{static_cast<int64_t>(v.size())})));
  }
  n.unsupported("a Constant without value, value_float(s) or value_int(s)");
}

std::vector<Value> shape_of(const NodeRun& n) {
  const Shape& s = n.value(0).var.shape();
  const int64_t rank = s.size();
  int64_t start = n.i("start", 0), end = n.i("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, start, rank);
  std::vector<int64_t> v(s.begin() + start, s.begin() + end);
  return one(constant(Tensor::from(v, Shape{static_cast<int64_t>(v.size())})));
}

std::vector<Value> sum_inputs(const NodeRun& n) {
  Var y = n.x(0);
  for (int k = 1; n.has(k); ++k) y = n.op1("add", {y, n.x(k)});
  return one(y);
}

std::vector<Value> resize(const NodeRun& n) {
  // Resize (opset 11+): X, roi, scales, sizes; Upsample (opset 9): X, scales.
  const Var& x = n.x(0);
  require_4d(n, x, "the input");
  Ints size;
  const int sizes_input = n.graph().opset >= 11 ? 3 : -1;
  const int scales_input = n.graph().opset >= 11 ? 2 : 1;
  if (sizes_input > 0 && n.has(sizes_input) && n.in(sizes_input).numel() > 0) {
    const std::vector<int64_t> s = n.int_values(sizes_input);
    if (s.size() != 4 || s[0] != x.size(0) || s[1] != x.size(1))
      n.unsupported("sizes must keep N and C, got [{}]", fmt::join(s, ", "));
    check_extents(n, "sizes", {s[2], s[3]});
    size = Ints{s[2], s[3]};
  } else if (n.has(scales_input)) {
    const Tensor& scales = n.in(scales_input).value();
    if (scales.numel() != 4 || scales.at(0) != 1 || scales.at(1) != 1 ||
        !(scales.at(2) > 0 && scales.at(2) <= 1024) || !(scales.at(3) > 0 && scales.at(3) <= 1024))
      n.unsupported("scales must be [1, 1, sh, sw] with 0 < sh, sw <= 1024");
    size = Ints{static_cast<int64_t>(std::floor(x.size(2) * scales.at(2))),
                static_cast<int64_t>(std::floor(x.size(3) * scales.at(3)))};
  } else {
    n.bad("neither scales nor sizes is given");
  }
  // deltagraph's upsampling is PyTorch's, which agrees with ONNX's coordinate rules when each
  // side grows by a whole factor; other ratios differ between the two (the source position is
  // computed from the scale given, not the size ratio), so they are refused.
  if (size[0] % x.size(2) != 0 || size[1] % x.size(3) != 0)
    n.unsupported("resizing {} to [{}, {}]: only upsampling by whole factors is translated",
                  x.shape(), size[0], size[1]);
  const std::string mode = n.s("mode", "nearest");
  const std::string transform =
      n.opset() >= 11 ? n.s("coordinate_transformation_mode", "half_pixel") : "asymmetric";
  if (mode == "nearest") {
    // At a whole factor s, source floor(i / s) is what asymmetric + floor gives, and what
    // half_pixel gives with either rounding (no position falls on a tie).
    const std::string rounding =
        n.opset() >= 11 ? n.s("nearest_mode", "round_prefer_floor") : "floor";
    const bool same = (transform == "asymmetric" && rounding == "floor") ||
                      ((transform == "half_pixel" || transform == "pytorch_half_pixel") &&
                       rounding.rfind("round", 0) == 0);
    if (!same)
      n.unsupported("nearest mode with coordinate_transformation_mode '{}' and nearest_mode '{}'",
                    transform, rounding);
    return one(n.op1("upsample_nearest2d", {x}, {{"output_size", size}}));
  }
  if (mode == "linear" || mode == "bilinear") {
    if (transform != "align_corners" && transform != "pytorch_half_pixel" &&
        transform != "half_pixel")
      n.unsupported("linear mode with coordinate_transformation_mode '{}'", transform);
    return one(n.op1("upsample_bilinear2d", {x},
                     {{"output_size", size}, {"align_corners", transform == "align_corners"}}));
  }
  n.unsupported("mode '{}'", mode);
}

std::vector<Value> identity(const NodeRun& n) { return {n.value(0)}; }

// Axes as an attribute (before opset 13) or an input (from 13 on), each within [-rank, rank).
std::vector<int64_t> axes_of(const NodeRun& n, int input, int64_t rank) {
  std::vector<int64_t> axes =
      n.opset() >= 13 && n.has(input) ? n.int_values(input) : n.ints("axes");
  for (int64_t& a : axes) {
    if (a < -rank || a >= rank) n.bad("axis {} is out of range for rank {}", a, rank);
    if (a < 0) a += rank;
  }
  return axes;
}

// Unsqueeze and Squeeze only move sizes of 1: a reshape.
std::vector<Value> unsqueeze(const NodeRun& n) {
  const Var& x = n.in(0);
  const int64_t rank =
      x.dim() + static_cast<int64_t>(n.opset() >= 13 && n.has(1) ? n.int_values(1).size()
                                                                 : n.ints("axes").size());
  if (rank > 8) n.unsupported("a result of {} axes (at most 8)", rank);
  std::vector<bool> inserted(rank, false);
  for (int64_t a : axes_of(n, 1, rank)) {
    if (inserted[a]) n.bad("axis {} is given twice", a);
    inserted[a] = true;
  }
  Ints shape;
  for (int64_t a = 0, k = 0; a < rank; ++a)
    shape.push_back(inserted[a] ? 1 : x.size(static_cast<int>(k++)));
  return one(n.op1("reshape", {x}, {{"shape", shape}}));
}

std::vector<Value> squeeze(const NodeRun& n) {
  const Var& x = n.in(0);
  const std::vector<int64_t> axes = axes_of(n, 1, x.dim());
  Ints shape;
  for (int a = 0; a < x.dim(); ++a) {
    const bool listed = std::find(axes.begin(), axes.end(), a) != axes.end();
    if (listed && x.size(a) != 1) n.bad("axis {} has size {}, not 1", a, x.size(a));
    if (!(listed || (axes.empty() && x.size(a) == 1))) shape.push_back(x.size(a));
  }
  return one(n.op1("reshape", {x}, {{"shape", shape}}));
}

// Max and Min of any number of inputs (numpy broadcasting) from relu:
// max(a, b) = a + relu(b - a), min(a, b) = a - relu(a - b).
std::vector<Value> extremum(const NodeRun& n, bool maximum) {
  Var y = n.x(0);
  for (int k = 1; n.has(k); ++k) {
    const Var& b = n.x(k);
    y = maximum ? n.op1("add", {y, n.op1("relu", {n.op1("sub", {b, y})})})
                : n.op1("sub", {y, n.op1("relu", {n.op1("sub", {y, b})})});
  }
  return one(y);
}

// Clip(x, lo, hi) = hi - relu(hi - (lo + relu(x - lo))), with either bound absent.
std::vector<Value> clip(const NodeRun& n) {
  Var y = n.x(0);
  const bool inputs = n.opset() >= 11;
  auto bound = [&](int input, const char* attr) -> std::optional<double> {
    if (inputs) {
      if (!n.has(input)) return std::nullopt;
      if (n.in(input).numel() != 1) n.bad("input {} must be a scalar", input);
      return n.in(input).value().at(0);
    }
    if (!n.has_attr(attr)) return std::nullopt;
    return n.f(attr, 0.0);
  };
  if (const auto lo = bound(1, "min"))
    y = n.op1("add_scalar", {n.op1("relu", {n.op1("add_scalar", {y}, {{"c", -*lo}})})},
              {{"c", *lo}});
  if (const auto hi = bound(2, "max"))
    y = n.op1(
        "add_scalar",
        {n.op1("neg", {n.op1("relu", {n.op1("add_scalar", {n.op1("neg", {y})}, {{"c", *hi}})})})},
        {{"c", *hi}});
  return one(y);
}

// PRelu(x, slope) = relu(x) - slope * relu(-x), slope broadcasting to x (before opset 7, a
// slope [C] goes along the channel axis 1).
std::vector<Value> prelu(const NodeRun& n) {
  const Var& x = n.x(0);
  Var slope = n.x(1);
  if (n.opset() < 7 && slope.dim() == 1 && x.dim() > 2 && slope.size(0) == x.size(1)) {
    Ints shape{slope.size(0)};
    while (shape.size() < x.dim() - 1) shape.push_back(1);
    slope = n.op1("reshape", {slope}, {{"shape", shape}});
  }
  return one(n.op1(
      "sub", {n.op1("relu", {x}), n.op1("mul", {slope, n.op1("relu", {n.op1("neg", {x})})})}));
}

// Slice with step 1 (opset 10+: starts, ends, axes, steps as inputs; before: attributes), one
// narrow per axis; starts and ends are clamped as ONNX says.
std::vector<Value> slice(const NodeRun& n) {
  Var y = n.in(0);
  const bool inputs = n.opset() >= 10;
  const std::vector<int64_t> starts = inputs ? n.int_values(1) : n.ints("starts");
  const std::vector<int64_t> ends = inputs ? n.int_values(2) : n.ints("ends");
  std::vector<int64_t> axes =
      inputs ? (n.has(3) ? n.int_values(3) : std::vector<int64_t>{}) : n.ints("axes");
  if (axes.empty())
    for (size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<int64_t>(k));
  if (starts.size() != ends.size() || starts.size() != axes.size())
    n.bad("starts, ends and axes have {}, {} and {} values", starts.size(), ends.size(),
          axes.size());
  if (inputs && n.has(4))
    for (int64_t step : n.int_values(4))
      if (step != 1) n.unsupported("step {} (deltagraph's narrow takes step 1)", step);
  for (size_t k = 0; k < axes.size(); ++k) {
    int64_t axis = axes[k];
    if (axis < -y.dim() || axis >= y.dim())
      n.bad("axis {} is out of range for {}", axis, y.shape());
    if (axis < 0) axis += y.dim();
    const int64_t size = y.size(static_cast<int>(axis));
    auto clamp = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + size : v, 0, size); };
    const int64_t start = clamp(starts[k]), end = clamp(ends[k]);
    if (end <= start)
      n.unsupported("an empty slice of axis {} (deltagraph has no empty narrow)", axis);
    y = n.op1("narrow", {y}, {{"axis", axis}, {"start", start}, {"length", end - start}});
  }
  return one(y);
}

// Split into consecutive parts along an axis (equal parts when no sizes are given).
std::vector<Value> split(const NodeRun& n) {
  const Var& x = n.in(0);
  int64_t axis = n.i("axis", 0);
  if (axis < -x.dim() || axis >= x.dim()) n.bad("axis {} is out of range for {}", axis, x.shape());
  if (axis < 0) axis += x.dim();
  const int64_t size = x.size(static_cast<int>(axis));
  const int parts = n.outputs_wanted();
  std::vector<int64_t> sizes = n.opset() >= 13 && n.has(1) ? n.int_values(1) : n.ints("split");
  if (sizes.empty()) {
    if (parts < 1 || size % parts != 0) n.bad("{} does not split into {} equal parts", size, parts);
    sizes.assign(parts, size / parts);
  }
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s <= 0) n.unsupported("a part of size {} (deltagraph has no empty narrow)", s);
    total += s;
  }
  if (total != size || static_cast<int>(sizes.size()) != parts)
    n.bad("parts [{}] do not add up to size {} in {} outputs", fmt::join(sizes, ", "), size, parts);
  std::vector<Value> out;
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(
        Value{n.op1("narrow", {x}, {{"axis", axis}, {"start", start}, {"length", s}}), {}});
    start += s;
  }
  return out;
}

// Elementwise ops: one deltagraph op each (binary ones with opset < 7's broadcast and axis).
Translation unary_op(std::string_view onnx_op, const char* op) {
  return {onnx_op, 1, 1, 1, {}, [op](const NodeRun& n) { return unary(n, op); }};
}
Translation binary_op(std::string_view onnx_op, const char* op) {
  return {onnx_op, 2, 2, 1, {{"axis", kInt}, {"broadcast", kInt}}, [op](const NodeRun& n) {
            return binary(n, op);
          }};
}

const std::vector<Translation>& translations() {
  // One row per ONNX op: inputs (min, max), most outputs, the attributes understood, the
  // translation. Kept one row each for reading.
  // clang-format off
  static const std::vector<Translation> table = {
      {"Conv", 2, 3, 1, {{"auto_pad", kString}, {"dilations", kInts}, {"group", kInt},
                         {"kernel_shape", kInts}, {"pads", kInts}, {"strides", kInts}}, conv},
      {"ConvTranspose", 2, 3, 1, {{"auto_pad", kString}, {"dilations", kInts}, {"group", kInt},
                                  {"kernel_shape", kInts}, {"output_padding", kInts},
                                  {"output_shape", kInts}, {"pads", kInts}, {"strides", kInts}},
       conv_transpose},
      {"MaxPool", 1, 1, 2, {{"auto_pad", kString}, {"ceil_mode", kInt}, {"dilations", kInts},
                            {"kernel_shape", kInts}, {"pads", kInts}, {"storage_order", kInt},
                            {"strides", kInts}}, max_pool},
      {"MaxUnpool", 2, 3, 1, {{"kernel_shape", kInts}, {"pads", kInts}, {"strides", kInts}},
       max_unpool},
      {"AveragePool", 1, 1, 1, {{"auto_pad", kString}, {"ceil_mode", kInt},
                                {"count_include_pad", kInt}, {"kernel_shape", kInts},
                                {"pads", kInts}, {"strides", kInts}}, average_pool},
      {"GlobalAveragePool", 1, 1, 1, {}, global_average_pool},
      {"GlobalMaxPool", 1, 1, 1, {}, global_max_pool},
      {"BatchNormalization", 5, 5, 3, {{"epsilon", kFloat}, {"momentum", kFloat},
                                       {"training_mode", kInt}, {"spatial", kInt},
                                       {"is_test", kInt}, {"consumed_inputs", kInts}},  // opset < 7: the last two
       batch_normalization},
      {"Gemm", 2, 3, 1, {{"alpha", kFloat}, {"beta", kFloat}, {"transA", kInt}, {"transB", kInt},
                         {"broadcast", kInt}},  // opset < 7; C broadcasts anyway
       gemm},
      {"MatMul", 2, 2, 1, {}, matmul},
      binary_op("Add", "add"),
      binary_op("Sub", "sub"),
      binary_op("Mul", "mul"),
      binary_op("Div", "div"),
      {"Sum", 1, 64, 1, {}, sum_inputs},
      unary_op("Relu", "relu"),
      unary_op("Sigmoid", "sigmoid"),
      unary_op("Tanh", "tanh"),
      unary_op("Exp", "exp"),
      unary_op("Log", "log"),
      unary_op("Neg", "neg"),
      {"Elu", 1, 1, 1, {{"alpha", kFloat}},
       [](const NodeRun& n) { return unary(n, "elu", {{"alpha", n.f("alpha", 1.0)}}); }},
      {"LeakyRelu", 1, 1, 1, {{"alpha", kFloat}},
       [](const NodeRun& n) { return unary(n, "leaky_relu", {{"negative_slope", n.f("alpha", 0.01)}}); }},
      {"Softmax", 1, 1, 1, {{"axis", kInt}}, [](const NodeRun& n) { return softmax(n, "softmax"); }},
      {"LogSoftmax", 1, 1, 1, {{"axis", kInt}}, [](const NodeRun& n) { return softmax(n, "log_softmax"); }},
      {"Flatten", 1, 1, 1, {{"axis", kInt}}, flatten},
      {"Reshape", 2, 2, 1, {{"allowzero", kInt}}, reshape},
      {"Transpose", 1, 1, 1, {{"perm", kInts}}, transpose},
      {"Concat", 1, 64, 1, {{"axis", kInt}}, concat},
      {"ReduceSum", 1, 2, 1, {{"axes", kInts}, {"keepdims", kInt}, {"noop_with_empty_axes", kInt}},
       [](const NodeRun& n) { return reduce(n, "sum"); }},
      {"ReduceMean", 1, 1, 1, {{"axes", kInts}, {"keepdims", kInt}},
       [](const NodeRun& n) { return reduce(n, "mean"); }},
      {"Pad", 1, 3, 1, {{"mode", kString}, {"pads", kInts}, {"value", kFloat}}, pad},
      {"SoftmaxCrossEntropyLoss", 2, 3, 2, {{"ignore_index", kInt}, {"reduction", kString}},
       softmax_cross_entropy},
      {"Dropout", 1, 3, 2, {{"ratio", kFloat}, {"seed", kInt}}, dropout},
      {"Identity", 1, 1, 1, {}, identity},
      {"Constant", 0, 0, 1, {{"value", kTensor}, {"value_float", kFloat}, {"value_floats", kFloats},
                             {"value_int", kInt}, {"value_ints", kInts}}, constant_node},
      {"Shape", 1, 1, 1, {{"start", kInt}, {"end", kInt}}, shape_of},
      {"Resize", 1, 4, 1, {{"mode", kString}, {"coordinate_transformation_mode", kString},
                           {"nearest_mode", kString}, {"cubic_coeff_a", kFloat},
                           {"exclude_outside", kInt}, {"extrapolation_value", kFloat}}, resize},
      {"Upsample", 2, 2, 1, {{"mode", kString}}, resize},
      {"Unsqueeze", 1, 2, 1, {{"axes", kInts}}, unsqueeze},
      {"Squeeze", 1, 2, 1, {{"axes", kInts}}, squeeze},
      {"Max", 1, 64, 1, {}, [](const NodeRun& n) { return extremum(n, true); }},
      {"Min", 1, 64, 1, {}, [](const NodeRun& n) { return extremum(n, false); }},
      {"Clip", 1, 3, 1, {{"min", kFloat}, {"max", kFloat}}, clip},
      {"PRelu", 2, 2, 1, {}, prelu},
      {"Selu", 1, 1, 1, {{"alpha", kFloat}, {"gamma", kFloat}},
       [](const NodeRun& n) {
         const Var y = n.op1("elu", {n.x(0)}, {{"alpha", n.f("alpha", 1.67326319217681884765625)}});
         return one(n.op1("mul_scalar", {y}, {{"c", n.f("gamma", 1.05070102214813232421875)}}));
       }},
      {"Slice", 1, 5, 1, {{"starts", kInts}, {"ends", kInts}, {"axes", kInts}}, slice},
      {"Split", 1, 2, 64, {{"axis", kInt}, {"split", kInts}}, split},
  };
  // clang-format on
  return table;
}

const Translation* find_translation(std::string_view op_type) {
  for (const Translation& t : translations())
    if (t.op_type == op_type) return &t;
  return nullptr;
}

// ---- validation -------------------------------------------------------------------------------

void validate_node(const onnx::NodeProto& node, const std::string& label) {
  if (!node.domain().empty() && node.domain() != "ai.onnx")
    fail<OnnxUnsupported>("{}: domain '{}' (deltagraph translates the default ONNX domain only)",
                          label, node.domain());
  const Translation* t = find_translation(node.op_type());
  if (!t)
    fail<OnnxUnsupported>(
        "{}: deltagraph has no translation for ONNX op '{}' (docs/onnx.md lists "
        "those it has)",
        label, node.op_type());
  if (node.input_size() < t->min_inputs || node.input_size() > t->max_inputs)
    fail("{}: {} inputs; {} takes {} to {}", label, node.input_size(), node.op_type(),
         t->min_inputs, t->max_inputs);
  if (node.output_size() < 1 || node.output_size() > t->max_outputs)
    fail("{}: {} outputs; {} gives 1 to {}", label, node.output_size(), node.op_type(),
         t->max_outputs);
  std::set<std::string> seen;
  for (const auto& a : node.attribute()) {
    if (!seen.insert(a.name()).second) fail("{}: attribute '{}' is given twice", label, a.name());
    const AttrRule* rule = nullptr;
    for (const AttrRule& r : t->attrs)
      if (r.name == a.name()) rule = &r;
    if (!rule)
      fail<OnnxUnsupported>("{}: attribute '{}' is not one deltagraph translates for {}", label,
                            a.name(), node.op_type());
    // A missing type field is legal in old files; the populated field then tells.
    int kind = a.type();
    if (kind == onnx::AttributeProto::UNDEFINED) {
      if (a.has_i())
        kind = kInt;
      else if (a.has_f())
        kind = kFloat;
      else if (a.has_s())
        kind = kString;
      else if (a.has_t())
        kind = kTensor;
      else if (a.ints_size() > 0)
        kind = kInts;
      else if (a.floats_size() > 0)
        kind = kFloats;
    }
    if (kind != rule->kind)
      fail("{}: attribute '{}' must be {}, the file gives {}", label, a.name(),
           attr_kind_name(rule->kind), attr_kind_name(kind));
  }
}

OnnxValueInfo value_info(const onnx::ValueInfoProto& info, std::string_view what) {
  OnnxValueInfo out;
  out.name = info.name();
  if (!info.has_type() || !info.type().has_tensor_type())
    fail<OnnxUnsupported>("{} '{}' is not a tensor", what, info.name());
  const auto& tensor = info.type().tensor_type();
  out.dtype = onnx_detail::dtype_from_elem_type(tensor.elem_type(),
                                                fmt::format("{} '{}'", what, info.name()));
  if (tensor.has_shape()) {
    out.has_shape = true;
    if (tensor.shape().dim_size() > 8)
      fail<OnnxUnsupported>("{} '{}' has {} axes (at most 8)", what, info.name(),
                            tensor.shape().dim_size());
    for (const auto& d : tensor.shape().dim()) {
      if (d.has_dim_value() && d.dim_value() < 0)
        fail("{} '{}': negative dimension {}", what, info.name(), d.dim_value());
      out.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
    }
  }
  return out;
}

// Checks every reference and sorts the nodes so that each value is produced before it is read.
std::vector<const onnx::NodeProto*> sorted_nodes(const onnx::GraphProto& g,
                                                 const std::unordered_set<std::string>& given) {
  std::unordered_map<std::string, size_t> producer;
  for (int k = 0; k < g.node_size(); ++k)
    for (const std::string& out : g.node(k).output()) {
      if (out.empty()) continue;
      if (given.count(out) || !producer.emplace(out, k).second)
        fail("{}: output '{}' is defined twice in the graph", node_label(g.node(k), k), out);
    }
  std::vector<int> waiting(g.node_size(), 0);
  std::vector<std::vector<size_t>> readers(g.node_size());
  for (int k = 0; k < g.node_size(); ++k)
    for (const std::string& in : g.node(k).input()) {
      if (in.empty() || given.count(in)) continue;
      auto p = producer.find(in);
      if (p == producer.end())
        fail("{}: input '{}' is not a graph input, an initializer or any node's output",
             node_label(g.node(k), k), in);
      ++waiting[k];
      readers[p->second].push_back(k);
    }
  std::vector<const onnx::NodeProto*> order;
  std::vector<size_t> ready;
  for (int k = g.node_size() - 1; k >= 0; --k)
    if (waiting[k] == 0) ready.push_back(k);
  while (!ready.empty()) {
    const size_t k = ready.back();
    ready.pop_back();
    order.push_back(&g.node(static_cast<int>(k)));
    for (size_t r : readers[k])
      if (--waiting[r] == 0) ready.push_back(r);
  }
  if (order.size() != static_cast<size_t>(g.node_size())) {
    std::string stuck;
    for (int k = 0, shown = 0; k < g.node_size() && shown < 4; ++k)
      if (waiting[k] > 0) {
        stuck += fmt::format("{}{}", shown++ ? ", " : "", node_label(g.node(k), k));
      }
    fail("the graph has a cycle: {} wait on each other's outputs", stuck);
  }
  for (const auto& out : g.output())
    if (!given.count(out.name()) && !producer.count(out.name()))
      fail("graph output '{}' is not produced by any node", out.name());
  return order;
}

}  // namespace

OnnxModel parse_onnx(std::span<const uint8_t> bytes, std::string_view origin) {
  auto graph = std::make_shared<OnnxModel::Graph>();
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    fail("load_onnx: {} is larger than 2 GiB (ONNX's protobuf limit)", origin);
  if (!graph->model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail("load_onnx: {} is not an ONNX model (protobuf parse failed)", origin);
  const onnx::ModelProto& m = graph->model;
  if (!m.has_graph()) fail("load_onnx: {} has no graph", origin);
  int64_t opset = 0;
  for (const auto& o : m.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  if (opset == 0 && m.opset_import_size() == 0) opset = 1;
  if (opset < 1 || opset > 21)
    fail<OnnxUnsupported>(
        "load_onnx: {} imports opset {} of the default domain (1 to 21 are known)", origin, opset);
  graph->opset = opset;
  const onnx::GraphProto& g = m.graph();
  if (g.sparse_initializer_size() > 0)
    fail<OnnxUnsupported>("load_onnx: {}: sparse initializers are not supported", origin);

  OnnxModel model;
  model.opset = opset;
  model.graph_name = g.name();
  model.producer =
      m.producer_name() + (m.producer_version().empty() ? "" : " " + m.producer_version());
  model.params.eval();
  graph->training = model.params.mode();

  // Which initializers batch norm reads as statistics: those are buffers, not parameters.
  std::unordered_set<std::string> statistics;
  for (const auto& node : g.node())
    if (node.op_type() == "BatchNormalization")
      for (int k = 3; k < std::min(5, node.input_size()); ++k) statistics.insert(node.input(k));

  std::unordered_set<std::string> given;
  for (const auto& init : g.initializer()) {
    if (init.name().empty()) fail("load_onnx: {}: an initializer has no name", origin);
    if (!given.insert(init.name()).second)
      fail("load_onnx: {}: initializer '{}' is defined twice", origin, init.name());
    Tensor value = tensor_from_proto(init, fmt::format("initializer '{}'", init.name()));
    Var var;
    if (!is_floating(value.dtype())) {
      var = constant(value, init.name());
    } else if (statistics.count(init.name())) {
      var = constant(model.params.add_buffer(init.name(), value), init.name());
    } else {
      var = model.params.add(init.name(), value);
    }
    graph->initializers.emplace(init.name(), var);
  }
  for (const auto& in : g.input()) {
    if (given.count(in.name())) continue;  // an initializer's declaration (IR version < 4)
    if (in.name().empty()) fail("load_onnx: {}: a graph input has no name", origin);
    model.inputs.push_back(value_info(in, "graph input"));
    given.insert(in.name());
  }
  for (const auto& out : g.output()) model.outputs.push_back(value_info(out, "graph output"));
  for (int k = 0; k < g.node_size(); ++k) validate_node(g.node(k), node_label(g.node(k), k));
  graph->order = sorted_nodes(g, given);
  model.graph = std::move(graph);
  return model;
}

std::vector<std::string> onnx_supported_ops() {
  std::vector<std::string> out;
  for (const Translation& t : translations()) out.emplace_back(t.op_type);
  return out;
}

std::vector<std::string> onnx_file_op_types(const std::string& path) {
  const std::string bytes = onnx_detail::read_file(path, "onnx_file_op_types");
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes))
    fail("onnx_file_op_types: '{}' is not an ONNX model (protobuf parse failed)", path);
  std::vector<std::string> out;
  for (const auto& node : model.graph().node()) out.push_back(node.op_type());
  return out;
}

OnnxModel load_onnx(const std::string& path) {
  const std::string bytes = onnx_detail::read_file(path, "load_onnx");
  return parse_onnx(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
                    "'" + path + "'");
}

std::vector<Var> OnnxModel::operator()(const std::vector<Var>& input_values) const {
  if (!graph) fail("OnnxModel: not loaded (use dg::load_onnx)");
  if (input_values.size() != inputs.size())
    fail("OnnxModel: the model takes {} inputs, {} were given", inputs.size(), input_values.size());
  std::unordered_map<std::string, Value> values;
  for (const auto& [name, var] : graph->initializers) values[name] = Value{var, {}};
  for (size_t k = 0; k < inputs.size(); ++k) {
    const OnnxValueInfo& info = inputs[k];
    const Var& v = input_values[k];
    if (!v.defined()) fail("OnnxModel: input '{}' is undefined", info.name);
    if (v.dtype() != info.dtype)
      fail("OnnxModel: input '{}' must be {}, got {}", info.name, dtype_name(info.dtype),
           dtype_name(v.dtype()));
    if (info.has_shape) {
      bool fits = v.dim() == static_cast<int>(info.shape.size());
      for (int a = 0; fits && a < v.dim(); ++a)
        fits = info.shape[a] < 0 || info.shape[a] == v.size(a);
      if (!fits)
        fail("OnnxModel: input '{}' must have shape [{}] (-1: any size), got {}", info.name,
             fmt::join(info.shape, ", "), v.shape());
    }
    values[info.name] = Value{v, {}};
  }
  const onnx::GraphProto& g = graph->model.graph();
  for (const onnx::NodeProto* node : graph->order) {
    const size_t index = static_cast<size_t>(node - &g.node(0));
    const std::string label = node_label(*node, index);
    std::vector<Value> in;
    for (const std::string& name : node->input())
      in.push_back(name.empty() ? Value{} : values.at(name));
    std::vector<Value> out;
    try {
      out = find_translation(node->op_type())->run(NodeRun(*node, label, std::move(in), *graph));
    } catch (const OnnxUnsupported&) {
      throw;
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.rfind(label, 0) == 0) throw;
      throw Error(fmt::format("{}: {}", label, what));
    }
    for (int k = 0; k < node->output_size() && k < static_cast<int>(out.size()); ++k) {
      const std::string& name = node->output(k);
      if (name.empty()) continue;
      Value& v = out[k];
      if (v.var.defined() && v.var.producer() && v.var.name().empty()) v.var.named(name);
      values[name] = std::move(v);
    }
  }
  std::vector<Var> result;
  for (const OnnxValueInfo& info : outputs) {
    const Value& v = values.at(info.name);
    result.push_back(v.plane_of.empty()
                         ? v.var
                         : constant(plane_to_flat_indices(v.var.value(), v.plane_of), info.name));
  }
  return result;
}

std::vector<Var> OnnxModel::example_inputs(int64_t free_size) const {
  std::vector<Var> out;
  for (const OnnxValueInfo& info : inputs) {
    if (!info.has_shape) fail("OnnxModel::example_inputs: input '{}' declares no shape", info.name);
    Shape shape;
    for (int64_t d : info.shape) shape.push_back(d < 0 ? free_size : d);
    out.push_back(input(Tensor::zeros(shape, info.dtype), info.name));
  }
  return out;
}

std::vector<std::string> OnnxModel::op_types() const {
  std::vector<std::string> out;
  if (!graph) return out;
  for (const onnx::NodeProto* node : graph->order)
    if (std::find(out.begin(), out.end(), node->op_type()) == out.end())
      out.push_back(node->op_type());
  return out;
}

}  // namespace dg
