// The op registry, attribute handling and the generic op call.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <shared_mutex>

#include "anomaly_checks.h"
#include "deltagraph/core/anomaly.h"
#include "deltagraph/core/graph.h"
#include "deltagraph/core/op.h"
#include "deltagraph/core/profiler.h"
#include "deltagraph/core/tape.h"
#include "recording.h"

namespace dg {

const char* attr_type_name(AttrType type) {
  switch (type) {
    case AttrType::integer:
      return "integer";
    case AttrType::real:
      return "float";
    case AttrType::boolean:
      return "bool";
    case AttrType::string:
      return "string";
    case AttrType::ints:
      return "list of integers";
    case AttrType::pair:
      return "pair [h, w]";
    case AttrType::padding:
      return "padding";
  }
  return "?";
}

Padding Padding::resolved(Pair kernel, Pair dilation) const {
  if (!same()) return *this;
  const int64_t rows = dilation.h * (kernel.h - 1), columns = dilation.w * (kernel.w - 1);
  return {rows / 2, rows - rows / 2, columns / 2, columns - columns / 2};
}

std::string Padding::to_string() const {
  if (!mode.empty()) return fmt::format("\"{}\"", mode);
  return fmt::format("[{},{},{},{}]", top, bottom, left, right);
}

std::string AttrValue::to_string() const {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>)
          return fmt::format("\"{}\"", v);
        else if constexpr (std::is_same_v<T, bool>)
          return v ? "true" : "false";
        else if constexpr (std::is_same_v<T, double>)
          return fmt::format("{:g}", v);
        else
          return fmt::format("{}", v);
      },
      value_);
}

int OpDef::required_inputs() const {
  int n = 0;
  for (const InputSpec& in : inputs) n += in.optional ? 0 : 1;
  return n;
}

const InputSpec& OpDef::input_spec(size_t i) const {
  return inputs[std::min(i, inputs.size() - 1)];
}

std::string OpDef::input_name(size_t i) const {
  if (i < inputs.size() && (!variadic() || i + 1 < inputs.size())) return inputs[i].name;
  if (!variadic()) return fmt::format("input {}", i);
  return fmt::format("{}{}", inputs.back().name, i - inputs.size() + 2);
}

int OpDef::attr_index(std::string_view attr) const {
  for (size_t i = 0; i < attrs.size(); ++i)
    if (attrs[i].name == attr) return static_cast<int>(i);
  return -1;
}

namespace {

std::string attr_names(const OpDef& op) {
  if (op.attrs.empty()) return "it has none";
  std::string s = "it has: ";
  for (size_t i = 0; i < op.attrs.size(); ++i) s += (i ? ", " : "") + op.attrs[i].name;
  return s;
}

}  // namespace

Padding Attrs::padding(std::string_view name) const {
  const AttrValue& v = get(name);
  if (v.holds<std::string>()) return Padding(v.as<std::string>());
  const Ints& p = v.as<Ints>();
  return {p[0], p[1], p[2], p[3]};
}

const AttrValue& Attrs::get(std::string_view attr) const {
  if (!op_) fail("Attrs::get(\"{}\"): no op (empty attributes)", attr);
  int i = op_->attr_index(attr);
  if (i < 0 || i >= static_cast<int>(values_.size()))
    fail("{}: no attribute '{}' ({})", op_->name, attr, attr_names(*op_));
  return values_[i];
}

Attrs Attrs::with(std::initializer_list<std::pair<std::string_view, AttrValue>> changes) const {
  AttrMap given;
  for (size_t i = 0; i < values_.size(); ++i) given.emplace_back(op_->attrs[i].name, values_[i]);
  for (const auto& change : changes) {
    auto it =
        std::find_if(given.begin(), given.end(), [&](auto& p) { return p.first == change.first; });
    if (it == given.end())
      fail("{}: no attribute '{}' ({})", op_->name, change.first, attr_names(*op_));
    it->second = change.second;
  }
  return make_attrs(*op_, given);
}

// ---- registry ---------------------------------------------------------------------------

namespace {

struct Registry {
  std::shared_mutex mutex;
  std::deque<OpDef> defs;  // deque: addresses stay stable as ops are added
  std::map<std::string, const OpDef*, std::less<>> by_name;
};

Registry& registry_storage() {
  static Registry r;
  return r;
}

// Checks a default against its declared type, converting where the literal is ambiguous
// (an integer written for a float).
std::optional<AttrValue> coerce(const AttrSpec& spec, const AttrValue& v) {
  switch (spec.type) {
    case AttrType::integer:
      if (v.holds<int64_t>()) return v;
      break;
    case AttrType::real:
      if (v.holds<double>()) return v;
      if (v.holds<int64_t>()) return AttrValue(static_cast<double>(v.as<int64_t>()));
      break;
    case AttrType::boolean:
      if (v.holds<bool>()) return v;
      break;
    case AttrType::string:
      if (v.holds<std::string>()) return v;
      break;
    case AttrType::ints:
      if (v.holds<Ints>()) return v;
      break;
    case AttrType::pair:
      if (v.holds<Ints>() && v.as<Ints>().size() == 2) return v;
      if (v.holds<int64_t>()) return AttrValue(Ints{v.as<int64_t>(), v.as<int64_t>()});
      break;
    case AttrType::padding:
      if (v.holds<int64_t>()) return AttrValue(Padding(v.as<int64_t>()));
      if (v.holds<Ints>()) {
        const Ints& p = v.as<Ints>();
        if (p.size() == 1) return AttrValue(Padding(p[0]));
        if (p.size() == 2) return AttrValue(Padding(p[0], p[1]));
        if (p.size() == 4) return v;
      }
      if (v.holds<std::string>()) {
        if (v.as<std::string>() == "valid") return AttrValue(Padding(0));
        if (v.as<std::string>() == "same") return v;
      }
      break;
  }
  return std::nullopt;
}

const char* held_type(const AttrValue& v) {
  if (v.holds<int64_t>()) return "an integer";
  if (v.holds<double>()) return "a float";
  if (v.holds<bool>()) return "a bool";
  if (v.holds<std::string>()) return "a string";
  return "a list";
}

const OpDef& add_op(OpDef def) {
  if (def.name.empty()) fail("register_op: the op has no name");
  if (!def.shape) fail("register_op: op '{}' has no shape rule", def.name);
  if (!def.forward) fail("register_op: op '{}' has no forward kernel", def.name);
  if (def.outputs.empty()) fail("register_op: op '{}' declares no outputs", def.name);
  bool seen_optional = false;
  for (const InputSpec& in : def.inputs) {
    if (seen_optional && !in.optional)
      fail("register_op: op '{}': required input '{}' follows an optional one", def.name, in.name);
    seen_optional |= in.optional;
    if (in.variadic && &in != &def.inputs.back())
      fail("register_op: op '{}': only the last input can be variadic, not '{}'", def.name,
           in.name);
  }
  for (AttrSpec& spec : def.attrs) {
    if (!spec.default_value) continue;
    auto converted = coerce(spec, *spec.default_value);
    if (!converted)
      fail("register_op: op '{}': the default of '{}' is {}, not of type {}", def.name, spec.name,
           held_type(*spec.default_value), attr_type_name(spec.type));
    spec.default_value = *converted;
  }
  Registry& r = registry_storage();
  std::unique_lock lock(r.mutex);
  if (r.by_name.count(def.name))
    fail("register_op: an op named '{}' is already registered", def.name);
  r.defs.push_back(std::move(def));
  const OpDef& stored = r.defs.back();
  r.by_name.emplace(stored.name, &stored);
  return stored;
}

// The function that registers the library's own ops, installed by the ops layer.
std::atomic<void (*)()> builtin_ops{nullptr};

// Runs the installed registration once. Before anything is installed (a program without the ops
// layer) it does nothing, and leaves the once-flag for when something is.
void ensure_builtins() {
  static std::once_flag once;
  if (void (*register_all)() = builtin_ops.load()) std::call_once(once, register_all);
}

// Edit distance, to suggest the op a user probably meant.
size_t distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

void install_builtin_ops(void (*register_all)()) { builtin_ops.store(register_all); }

Attrs::Attrs(const OpDef& op, std::initializer_list<NamedAttr> given) : op_(&op) {
  if (given.size() != op.attrs.size())
    fail("{}: the typed call gives {} attributes, the op has {} ({})", op.name, given.size(),
         op.attrs.size(), attr_names(op));
  size_t i = 0;
  for (const NamedAttr& a : given) {
    const AttrSpec& spec = op.attrs[i++];
    if (a.name != spec.name)
      fail("{}: the typed call gives '{}' where the op's attribute {} is '{}'", op.name, a.name, i,
           spec.name);
    std::optional<AttrValue> value = coerce(spec, a.value);
    if (!value)
      fail("{}: the typed call gives attribute '{}' {}, not {} {}", op.name, spec.name,
           held_type(a.value), spec.type == AttrType::integer ? "an" : "a",
           attr_type_name(spec.type));
    values_.push_back(std::move(*value));
  }
}

// Called from the ops layer's registration while ensure_builtins runs, so it must not call
// ensure_builtins itself.
const OpDef& register_builtin(OpDef def) {
  def.builtin = true;
  return add_op(std::move(def));
}

const OpDef& register_op(OpDef def) {
  ensure_builtins();
  def.builtin = false;
  return add_op(std::move(def));
}

const OpDef& find_op(std::string_view name) {
  ensure_builtins();
  Registry& r = registry_storage();
  std::shared_lock lock(r.mutex);
  auto it = r.by_name.find(name);
  if (it != r.by_name.end()) return *it->second;
  std::string close;
  for (const auto& [other, def] : r.by_name)
    if (distance(name, other) <= 2 || other.find(name) != std::string::npos)
      close += (close.empty() ? "" : ", ") + other;
  if (!builtin_ops.load())
    fail(
        "unknown op '{}': no op families are linked into this program (include "
        "<deltagraph/ops/ops.h> or <deltagraph/deltagraph.h>)",
        name);
  if (close.empty()) fail("unknown op '{}' (`dg ops` lists the registered ops)", name);
  fail("unknown op '{}'; did you mean: {}?", name, close);
}

std::vector<const OpDef*> ops() {
  ensure_builtins();
  Registry& r = registry_storage();
  std::shared_lock lock(r.mutex);
  std::vector<const OpDef*> out;
  for (const auto& [name, def] : r.by_name) out.push_back(def);
  return out;
}

Attrs make_attrs(const OpDef& op, const AttrMap& given) {
  std::vector<std::optional<AttrValue>> slots(op.attrs.size());
  for (const auto& [name, value] : given) {
    int i = op.attr_index(name);
    if (i < 0) fail("{}: unknown attribute '{}' ({})", op.name, name, attr_names(op));
    if (slots[i]) fail("{}: attribute '{}' is given twice", op.name, name);
    const AttrSpec& spec = op.attrs[i];
    auto converted = coerce(spec, value);
    if (!converted)
      fail("{}: attribute '{}' must be {} {}{}, got {} ({})", op.name, name,
           spec.type == AttrType::integer ? "an" : "a", attr_type_name(spec.type),
           spec.doc.empty() ? "" : " (" + spec.doc + ")", held_type(value), value.to_string());
    slots[i] = std::move(*converted);
  }
  std::vector<AttrValue> values;
  values.reserve(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i])
      values.push_back(std::move(*slots[i]));
    else if (op.attrs[i].default_value)
      values.push_back(*op.attrs[i].default_value);
    else
      fail("{}: missing required attribute '{}' ({})", op.name, op.attrs[i].name,
           attr_type_name(op.attrs[i].type));
  }
  return Attrs(&op, std::move(values));
}

DType OpCall::float_dtype() const {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (op.input_spec(i).kind == InputKind::floating) return inputs[i].dtype();
  for (const Tensor& t : inputs)
    if (is_floating(t.dtype())) return t.dtype();
  return DType::f32;
}

// ---- the generic call -------------------------------------------------------------------

namespace {

void check_inputs(const OpDef& op, std::span<const Var> inputs) {
  const int n = static_cast<int>(inputs.size());
  const int required = op.required_inputs();
  const int most = op.variadic() ? INT32_MAX : static_cast<int>(op.inputs.size());
  if (n < required || n > most) {
    std::string names;
    for (const InputSpec& in : op.inputs)
      names += (names.empty() ? "" : ", ") + in.name + (in.optional ? "?" : "") +
               (in.variadic ? "1, ..." : "");
    if (op.variadic())
      fail("{}: expects at least {} input{} ({}), got {}", op.name, required,
           required == 1 ? "" : "s", names, n);
    if (required == most) fail("{}: expects {} inputs ({}), got {}", op.name, most, names, n);
    fail("{}: expects {} to {} inputs ({}), got {}", op.name, required, most, names, n);
  }
  const Var* first_float = nullptr;
  for (int i = 0; i < n; ++i) {
    const InputSpec& spec = op.input_spec(i);
    const std::string name = op.input_name(i);
    if (!inputs[i].defined()) fail("{}: input '{}' is an undefined Var", op.name, name);
    const Tensor& t = inputs[i].value();
    if (!t.defined()) fail("{}: input '{}' holds no tensor", op.name, name);
    switch (spec.kind) {
      case InputKind::int64:
        if (t.dtype() != DType::i64)
          fail("{}: input '{}' must be int64, got {} {}", op.name, name, t.dtype(), t.shape());
        break;
      case InputKind::floating:
      case InputKind::buffer:
        if (!is_floating(t.dtype()))
          fail("{}: input '{}' must be float32 or float64, got int64 {}", op.name, name, t.shape());
        if (first_float && first_float->dtype() != t.dtype())
          fail("{}: input '{}' is {} but '{}' is {}; convert one of them (Tensor::to)", op.name,
               name, t.dtype(), op.input_name(first_float - inputs.data()), first_float->dtype());
        if (!first_float) first_float = &inputs[i];
        break;
      case InputKind::float_or_int64:
        break;
    }
  }
}

// "conv2d: x has 3 channels ..." becomes "conv2d at model.cpp:42 in encoder/block1: x has 3
// channels ...": the user's line and name scope, which the op's own rules cannot know.
std::string at_call_site(const OpDef& op, const SourceLocation& location, std::string_view what) {
  std::string where = op.name;
  if (location.line() != 0) {
    std::string_view file = location.file_name();
    if (size_t slash = file.rfind('/'); slash != std::string_view::npos)
      file.remove_prefix(slash + 1);
    where += fmt::format(" at {}:{}", file, location.line());
  }
  if (const std::string& scope = Scope::current(); !scope.empty()) where += " in " + scope;
  const std::string own_prefix = op.name + ": ";
  if (what.starts_with(own_prefix)) what.remove_prefix(own_prefix.size());
  return where + ": " + std::string(what);
}

}  // namespace

namespace {

// The generic call: validates, runs the kernel and, if recording, puts a node on the tape.
// Writes the outputs to `result`, inline storage the typed ops keep on their stack.
void call_into(const OpDef& op, std::span<const Var> inputs, Attrs attrs, SourceLocation location,
               SmallVector<Var, 2>& result, std::shared_ptr<const void> context = nullptr) {
  // The input tensors side by side for the kernel (no allocation for up to 4 inputs).
  SmallVector<Tensor, 4> values;
  std::vector<TensorSpec> specs;
  std::vector<Tensor> outs;
  const bool profiling = Profiler::active();
  const auto start =
      profiling ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
  try {
    check_inputs(op, inputs);
    if (attrs.op() != &op) {
      if (attrs.op() == nullptr && op.attrs.empty())
        attrs = Attrs(&op, {});
      else
        fail("{}: attributes were made for another op", op.name);
    }
    for (const Var& v : inputs) values.push_back(v.value());
    OpCall c{op, values, attrs, context.get()};
    specs = op.shape(c);
    // Outputs with no elements have nothing to compute: no kernel has to handle empty axes (a
    // softmax over an axis of size 0 once read out of bounds, found by fuzz_onnx).
    const bool all_empty = std::all_of(specs.begin(), specs.end(),
                                       [](const TensorSpec& s) { return s.shape.product() == 0; });
    if (all_empty && !specs.empty()) {
      for (const TensorSpec& s : specs) outs.emplace_back(s.shape, s.dtype);
    } else {
      outs = op.forward(c, specs);
    }
  } catch (const ShapeError& e) {
    throw ShapeError(at_call_site(op, location, e.what()));
  } catch (const AnomalyError&) {
    throw;  // names its call site already
  } catch (const Error& e) {
    throw Error(at_call_site(op, location, e.what()));
  }
  if (outs.size() != op.outputs.size())
    fail("{}: the kernel returned {} outputs, the op declares {}", op.name, outs.size(),
         op.outputs.size());
  for (size_t i = 0; i < outs.size(); ++i)
    if (!(outs[i].shape() == specs[i].shape) || outs[i].dtype() != specs[i].dtype)
      fail("{}: the kernel's output {} is {} {}, the shape rule said {} {}", op.name, i,
           outs[i].dtype(), outs[i].shape(), specs[i].dtype, specs[i].shape);
  if (profiling) {
    const BackwardOrigin& origin = Recorder::backward_origin();
    Profiler::record(op, origin.in_backward_pass, origin.vjp_op,
                     std::chrono::steady_clock::now() - start);
  }

  if (DetectAnomaly::enabled()) check_op_outputs(op, attrs, inputs, outs, location);

  bool record =
      op.vjp && Tape::recording() &&
      std::any_of(inputs.begin(), inputs.end(), [](const Var& v) { return v.requires_grad(); });
  if (!record) {
    for (Tensor& t : outs) result.push_back(constant(std::move(t)));
    return;
  }
  // One allocation for the node, its inputs, its outputs and its attributes (inline storage).
  auto node = std::make_shared<Node>();
  node->op = &op;
  node->attrs = std::move(attrs);
  node->inputs.assign(inputs.begin(), inputs.end());
  node->outputs.resize(outs.size());
  for (size_t i = 0; i < outs.size(); ++i) {
    VarImpl& out = node->outputs[i];
    out.value = std::move(outs[i]);
    out.producer = node.get();
    out.output_index = static_cast<int>(i);
    out.kind = VarKind::output;
    out.requires_grad = op.outputs[i].differentiable && is_floating(out.value.dtype());
  }
  node->sequence = Recorder::note_recorded();
  const std::string& scope = Scope::current();
  if (!scope.empty()) node->scope = scope;
  node->location = location;
  node->backward = Recorder::backward_origin();
  node->context = std::move(context);
  for (size_t i = 0; i < outs.size(); ++i) result.push_back(node->output(static_cast<int>(i)));
}

}  // namespace

std::vector<Var> call(const OpDef& op, std::span<const Var> inputs, Attrs attrs,
                      SourceLocation location) {
  SmallVector<Var, 2> result;
  call_into(op, inputs, std::move(attrs), location, result);
  return std::vector<Var>(std::make_move_iterator(result.begin()),
                          std::make_move_iterator(result.end()));
}

std::vector<Var> call_with_context(const OpDef& op, std::span<const Var> inputs, Attrs attrs,
                                   std::shared_ptr<const void> context, SourceLocation location) {
  SmallVector<Var, 2> result;
  call_into(op, inputs, std::move(attrs), location, result, std::move(context));
  return std::vector<Var>(std::make_move_iterator(result.begin()),
                          std::make_move_iterator(result.end()));
}

Var call_first(const OpDef& op, std::span<const Var> inputs, Attrs attrs, SourceLocation location) {
  SmallVector<Var, 2> result;
  call_into(op, inputs, std::move(attrs), location, result);
  return std::move(result[0]);
}

std::vector<Var> call(std::string_view name, std::vector<Var> inputs, const AttrMap& attrs,
                      SourceLocation location) {
  const OpDef& op = find_op(name);
  return call(op, inputs, make_attrs(op, attrs), location);
}

// ---- labels -----------------------------------------------------------------------------

std::string pair_label(const Ints& pair) {
  if (pair.size() == 2 && pair[0] == pair[1]) return std::to_string(pair[0]);
  std::string s;
  for (int i = 0; i < pair.size(); ++i) {
    if (i) s += 'x';
    s += std::to_string(pair[i]);
  }
  return s;
}

// [1,1,2,2] is "1x2" (as a pair), [0,1,0,1] is "0,1,0,1" (top, bottom, left, right).
std::string padding_label(const Ints& p) {
  if (p.size() == 4 && p[0] == p[1] && p[2] == p[3]) return pair_label(Ints{p[0], p[2]});
  std::string s;
  for (int64_t v : p) {
    if (!s.empty()) s += ',';
    s += std::to_string(v);
  }
  return s;
}

std::string default_label(const OpDef& op, const Attrs& attrs) {
  std::string s = op.name;
  for (size_t i = 0; i < op.attrs.size() && i < attrs.values().size(); ++i) {
    const AttrSpec& spec = op.attrs[i];
    const AttrValue& v = attrs.values()[i];
    if (spec.default_value && *spec.default_value == v) continue;
    std::string text;
    if (v.holds<Ints>() && spec.type == AttrType::padding)
      text = padding_label(v.as<Ints>());
    else if (v.holds<Ints>())
      text =
          spec.type == AttrType::pair ? pair_label(v.as<Ints>()) : fmt::format("{}", v.as<Ints>());
    else if (v.holds<std::string>())
      text = (spec.label.empty() ? "" : "=") + v.as<std::string>();
    else
      text = v.to_string();
    if (v.holds<bool>())
      s += " " + (v.as<bool>() ? spec.label.empty() ? spec.name : spec.label : "no_" + spec.name);
    else if (!spec.label.empty())
      s += " " + spec.label + text;
    else
      s += " " + spec.name + "=" + text;
  }
  return s;
}

std::string op_label(const OpDef& op, const Attrs& attrs, std::span<const Shape> input_shapes) {
  return op.label ? op.label(attrs, input_shapes) : default_label(op, attrs);
}

}  // namespace dg
