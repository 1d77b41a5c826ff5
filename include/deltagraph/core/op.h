// deltagraph: the op registry, the single source of truth about every op.
//
// An op is registered once, by name, as an OpDef: its inputs and outputs, its attributes with
// types and defaults, its shape rule, its forward kernel, its vector-Jacobian product (VJP) and
// its DOT label. The typed functions (dg::conv2d), the generic call by name (dg::call), the
// reference-case runner, `dg ops`, DOT export and the property tests all read that record.
//
// The VJP contract
// ----------------
// For an op y_1..y_m = f(x_1..x_n), the VJP receives the inputs and outputs as Vars and one
// cotangent g_j = dL/dy_j per output, and returns one Var per input: dL/dx_i = sum_j g_j^T
// dy_j/dx_i.
// - It is written with registered ops (dg::mul, dg::conv_transpose2d, ...), never with raw loops,
//   so that when the engine records the backward pass (create_graph) the gradient is itself a
//   differentiable expression: gradients of gradients come from the same code.
// - It returns an undefined Var for inputs that get no gradient (int64 inputs, inputs for which
//   needs_input_grad(i) is false). It returns, it does not accumulate: the engine sums the
//   contributions of every consumer of a value (fan-out).
// - Outputs declared non-differentiable (max_pool2d's indices) never receive a cotangent; the
//   cotangent of a differentiable output that nothing used is passed as zeros.
// - A returned gradient has exactly the shape and dtype of its input.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>
#include "deltagraph/core/source_location.h"

#include "deltagraph/core/shape.h"
#include "deltagraph/core/small_vector.h"
#include "deltagraph/core/tensor.h"
#include "deltagraph/core/var.h"

namespace dg {

// An integer-list attribute (a permutation, the axes to reduce, a target shape). Same type as
// Shape; the name says which role the list plays.
using Ints = Shape;

// A pair of sizes [h, w] (a 2-D attribute); a single number means the same for both axes.
struct Pair {
  int64_t h = 0, w = 0;
  constexpr Pair() = default;
  constexpr Pair(int64_t both) : h(both), w(both) {}  // NOLINT
  constexpr Pair(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  operator Ints() const { return Ints{h, w}; }  // NOLINT
  friend bool operator==(const Pair&, const Pair&) = default;
};

// The padding of a 2-D window op, as its `padding` attribute takes it: one number for every
// side, [h, w] (h rows at the top and at the bottom, w columns at the left and at the right),
// or [top, bottom, left, right]; or a mode: "valid" (no padding) or "same" (conv2d only: the
// output keeps the input's size at stride 1, the odd extra row/column at the bottom/right as
// TensorFlow and ONNX's SAME_UPPER). Resolved, it is always four numbers.
struct Padding {
  int64_t top = 0, bottom = 0, left = 0, right = 0;
  std::string mode;  // empty: the four numbers; "same" or "valid"
  Padding() = default;
  Padding(int64_t all) : top(all), bottom(all), left(all), right(all) {}  // NOLINT
  Padding(int all) : Padding(int64_t{all}) {}  // NOLINT (0 is not a null const char*)
  Padding(int64_t h, int64_t w) : top(h), bottom(h), left(w), right(w) {}
  Padding(int64_t top_, int64_t bottom_, int64_t left_, int64_t right_)
      : top(top_), bottom(bottom_), left(left_), right(right_) {}
  Padding(const char* mode_) : mode(mode_) {}             // NOLINT
  Padding(std::string mode_) : mode(std::move(mode_)) {}  // NOLINT
  bool same() const { return mode == "same"; }
  // The four numbers: "same" for a kernel with dilation (at stride 1) pads d(k-1) rows and
  // columns in all, the odd one at the bottom/right; numbers stay as they are.
  Padding resolved(Pair kernel, Pair dilation = 1) const;
  bool symmetric() const { return mode.empty() && top == bottom && left == right; }
  // Rows added above and below, columns left and right.
  int64_t rows() const { return top + bottom; }
  int64_t columns() const { return left + right; }
  // [top, bottom, left, right], or the mode.
  std::string to_string() const;
  friend bool operator==(const Padding&, const Padding&) = default;
};

enum class AttrType : uint8_t {
  integer,  // int64
  real,     // double
  boolean,
  string,
  ints,  // a list of int64 (e.g. a target shape)
  pair,  // exactly two int64, [h, w]
  // A Padding: stored as [top, bottom, left, right] (given as one, two or four int64) or as the
  // string "same"; "valid" is stored as [0, 0, 0, 0].
  padding,
};
const char* attr_type_name(AttrType type);

// One attribute value. Constructed implicitly from the natural C++ literal.
class AttrValue {
 public:
  using Storage = std::variant<int64_t, double, bool, std::string, Ints>;
  AttrValue() : value_(int64_t{0}) {}
  AttrValue(int v) : value_(int64_t{v}) {}                          // NOLINT
  AttrValue(int64_t v) : value_(v) {}                               // NOLINT
  AttrValue(double v) : value_(v) {}                                // NOLINT
  AttrValue(bool v) : value_(v) {}                                  // NOLINT
  AttrValue(const char* v) : value_(std::string(v)) {}              // NOLINT
  AttrValue(std::string v) : value_(std::move(v)) {}                // NOLINT
  AttrValue(Ints v) : value_(v) {}                                  // NOLINT
  AttrValue(std::initializer_list<int64_t> v) : value_(Ints(v)) {}  // NOLINT
  AttrValue(Pair v) : value_(Ints{v.h, v.w}) {}                     // NOLINT
  AttrValue(const Padding& v)                                       // NOLINT
      : value_(v.mode.empty() ? Storage(Ints{v.top, v.bottom, v.left, v.right}) : Storage(v.mode)) {
  }

  const Storage& storage() const { return value_; }
  template <class T>
  bool holds() const {
    return std::holds_alternative<T>(value_);
  }
  template <class T>
  const T& as() const {
    return std::get<T>(value_);
  }
  // Compact text: 2, 0.5, true, "mean", [2,2].
  std::string to_string() const;
  friend bool operator==(const AttrValue& a, const AttrValue& b) { return a.value_ == b.value_; }

 private:
  Storage value_;
};

struct AttrSpec {
  std::string name;
  AttrType type;
  // The default; std::nullopt makes the attribute required.
  std::optional<AttrValue> default_value;
  // One line for `dg ops` and the README ("= kernel_size when empty").
  std::string doc = "";
  // Short prefix used in DOT labels ("s" for stride gives "s2"); empty uses the name.
  std::string label = "";
};

struct OpDef;

// One attribute given by name, as a typed op function gives it.
struct NamedAttr {
  std::string_view name;
  AttrValue value;
};

// The attribute values of one op application, complete (defaults filled in) and in the order
// of the op's schema.
class Attrs {
 public:
  Attrs() = default;
  // The typed op functions' form, `Attrs(op, {{"stride", o.stride}, {"padding", o.padding}})`:
  // every attribute by name, in the schema's order. Checked against the schema on every call
  // (a few comparisons of short names): a missing, misplaced or mistyped attribute is an error
  // naming the op and both names, so two swapped attributes cannot go unnoticed.
  Attrs(const OpDef& op, std::initializer_list<NamedAttr> values);
  // Values already complete and in schema order (make_attrs builds them so).
  Attrs(const OpDef* op, std::vector<AttrValue> values)
      : op_(op),
        values_(std::make_move_iterator(values.begin()), std::make_move_iterator(values.end())) {}

  const AttrValue& get(std::string_view name) const;
  int64_t integer(std::string_view name) const { return get(name).as<int64_t>(); }
  double real(std::string_view name) const { return get(name).as<double>(); }
  bool boolean(std::string_view name) const { return get(name).as<bool>(); }
  const std::string& string(std::string_view name) const { return get(name).as<std::string>(); }
  const Ints& ints(std::string_view name) const { return get(name).as<Ints>(); }
  Pair pair(std::string_view name) const {
    const Ints& v = ints(name);
    return {v[0], v[1]};
  }
  // A padding attribute: its four numbers, or mode "same" (unresolved: the op knows its kernel).
  Padding padding(std::string_view name) const;

  const OpDef* op() const { return op_; }
  std::span<const AttrValue> values() const { return values_; }
  // A copy with some attributes replaced (names must exist in the schema).
  Attrs with(std::initializer_list<std::pair<std::string_view, AttrValue>> changes) const;

 private:
  const OpDef* op_ = nullptr;
  // Inline: most ops have at most two attributes, and a recorded node holds its Attrs.
  SmallVector<AttrValue, 2> values_;
};

// Attributes given by name, as the generic call and case files give them.
using AttrMap = std::vector<std::pair<std::string, AttrValue>>;

// What kinds of tensor an input accepts.
enum class InputKind : uint8_t {
  floating,        // float32 or float64; every floating input of an op must share one dtype
  int64,           // indices or class labels
  float_or_int64,  // class labels (int64) or probabilities (floating)
  // State the op reads and may update in place (batch norm's running statistics): floating, of
  // the op's dtype, and never differentiated (no gradient flows into it, none is checked).
  buffer,
};

struct InputSpec {
  std::string name;
  InputKind kind = InputKind::floating;
  bool optional = false;  // optional inputs come last (a bias)
  // The last input may take any number >= 1 of tensors (cat's x1, x2, ...); they share its spec
  // and are named <name>1, <name>2, ... in messages.
  bool variadic = false;
};

struct OutputSpec {
  std::string name;
  bool differentiable = true;
};

// Shape and dtype of one output, as the shape rule computes it.
struct TensorSpec {
  Shape shape;
  DType dtype;
};

// What the shape rule and the forward kernel see.
struct OpCall {
  const OpDef& op;
  std::span<const Tensor> inputs;  // only those given (optional ones may be absent)
  const Attrs& attrs;
  // What the caller handed call() beside the attributes (call_with_context): state that is not
  // an attribute, such as a checkpointed segment's program. Null for ordinary calls.
  const void* context = nullptr;
  const Tensor& input(int i) const { return inputs[i]; }
  bool has_input(int i) const { return i < static_cast<int>(inputs.size()); }
  // Floating dtype of the op's floating inputs (the dtype of outputs, usually).
  DType float_dtype() const;
};

struct VjpContext {
  const OpDef& op;
  const Attrs& attrs;
  std::span<const Var> inputs;
  std::span<const Var> outputs;
  std::span<const Var> grad_outputs;  // undefined for non-differentiable outputs
  std::span<const bool> needs_input_grad;
  const void* context = nullptr;  // the node's context (OpCall::context), kept with the node
  // The engine's own storage behind grad_outputs, when the engine built the context.
  Var* owned_grad_outputs = nullptr;

  const Var& input(int i) const { return inputs[i]; }
  bool has_input(int i) const { return i < static_cast<int>(inputs.size()); }
  const Var& output(int i) const { return outputs[i]; }
  const Var& grad_output(int i) const { return grad_outputs[i]; }
  // The cotangent of output i, handed over: the engine keeps no reference to it afterwards, so
  // a VJP that only passes it on (a checkpoint seeds its replay's backward pass with it) lets it
  // be freed as soon as that use is over. grad_output(i) is undefined after the call.
  Var take_grad_output(int i) const {
    return owned_grad_outputs ? std::move(owned_grad_outputs[i]) : grad_outputs[i];
  }
  bool needs(int i) const {
    return i < static_cast<int>(needs_input_grad.size()) && needs_input_grad[i];
  }
};

// What an op's JVP rule (forward mode) sees: the inputs and outputs, and a tangent per input
// (undefined where the input has none: an int64 input, a constant). It returns one tangent per
// output, J_y = sum_i dy/dx_i t_i, written with registered ops like a VJP (undefined for an
// output that gets none: a non-differentiable output, or all input tangents zero).
struct JvpContext {
  const OpDef& op;
  const Attrs& attrs;
  std::span<const Var> inputs;
  std::span<const Var> outputs;
  std::span<const Var> tangents;
  const void* context = nullptr;  // the node's context (OpCall::context)

  const Var& input(int i) const { return inputs[i]; }
  bool has_input(int i) const { return i < static_cast<int>(inputs.size()); }
  const Var& output(int i) const { return outputs[i]; }
  // The tangent of input i, or undefined (zero) when it has none.
  const Var& tangent(int i) const { return tangents[i]; }
  bool has_tangent(int i) const {
    return i < static_cast<int>(tangents.size()) && tangents[i].defined();
  }
};

// Draws random valid inputs and attributes for an op, for property-based tests. Implemented over
// RapidCheck by the testing library (testing.h), so every draw shrinks when a property fails;
// ops themselves do not depend on RapidCheck.
class Sampler {
 public:
  virtual ~Sampler() = default;
  // A whole number in [lo, hi]; shrinks towards lo.
  virtual int64_t integer(int64_t lo, int64_t hi) = 0;
  bool boolean() { return integer(0, 1) == 1; }
  // One of the given values; shrinks towards the first.
  template <class T>
  T choose(std::initializer_list<T> values) {
    return values.begin()[integer(0, static_cast<int64_t>(values.size()) - 1)];
  }
  // Random values with |x| in [0.1, 1.1] (away from kinks at 0), in the sampled float dtype.
  virtual Tensor smooth(const Shape& shape) = 0;
  // Pairwise distinct values at least 0.01 apart (no ties for max-pool, and finite differences
  // never change which element is largest).
  virtual Tensor distinct(const Shape& shape) = 0;
  // Positive values in [0.5, 2] (for log, div).
  virtual Tensor positive(const Shape& shape) = 0;
  // int64 values in [0, bound).
  virtual Tensor indices(const Shape& shape, int64_t bound) = 0;
  // The float dtype being tested.
  virtual DType dtype() const = 0;
};

// One random application of an op: its inputs and attributes.
struct OpSample {
  std::vector<Tensor> inputs;
  AttrMap attrs;
  // Which inputs carry the batch on axis 0, when the op on a batch equals the op on each
  // sample stacked (empty: the op is not batch-separable, e.g. a mean over the batch).
  std::vector<bool> batched = {};
};

using SampleFn = std::function<OpSample(Sampler&)>;

// A shape of rank in [min_rank, max_rank] with sizes in [1, max_size].
inline Shape sample_shape(Sampler& s, int min_rank, int max_rank, int64_t max_size = 4) {
  Shape shape;
  const int rank = static_cast<int>(s.integer(min_rank, max_rank));
  for (int d = 0; d < rank; ++d) shape.push_back(s.integer(1, max_size));
  return shape;
}

// A shape that broadcasts to `full`: some leading axes dropped, some axes set to 1.
inline Shape sample_broadcastable(Sampler& s, const Shape& full) {
  const int drop = static_cast<int>(s.integer(0, full.size()));
  Shape shape;
  for (int d = drop; d < full.size(); ++d) shape.push_back(s.boolean() ? 1 : full[d]);
  return shape;
}

// The shape rule of an op with one output shaped like input i (an elementwise op):
// `.shape = [](const dg::OpCall& c) { return dg::same_as_input(c); }`.
inline std::vector<TensorSpec> same_as_input(const OpCall& c, int i = 0) {
  return {{c.input(i).shape(), c.input(i).dtype()}};
}

using ShapeFn = std::function<std::vector<TensorSpec>(const OpCall&)>;
using ForwardFn = std::function<std::vector<Tensor>(const OpCall&, std::span<const TensorSpec>)>;
using VjpFn = std::function<std::vector<Var>(const VjpContext&)>;
using JvpFn = std::function<std::vector<Var>(const JvpContext&)>;
using LabelFn = std::function<std::string(const Attrs&, std::span<const Shape> input_shapes)>;

struct OpDef {
  std::string name;
  std::string summary;  // one line: what the op computes
  std::vector<InputSpec> inputs;
  std::vector<OutputSpec> outputs = {{"y"}};
  std::vector<AttrSpec> attrs;
  ShapeFn shape;      // validates inputs and attributes; throws ShapeError with the broken rule
  ForwardFn forward;  // computes outputs of the shapes the rule gave; inputs are already valid
  VjpFn vjp;          // nullptr: the op is not differentiable (its outputs never require grad)
  std::string vjp_formula;  // one line, for `dg ops` and the README ("dx = g * (x > 0)")
  // Whether the VJP reads the values of the op's outputs (y = exp(x): dx = g * y), not only
  // their shapes. When it does not (conv2d's VJP needs x and w, never y), a backward pass that
  // does not retain the graph frees outputs nothing else holds before running the VJP instead
  // of after: the VJP's own temporaries then take their place, and a long chain's backward peak
  // is lower. true is the safe default for ops of your own; the property tests check every op
  // that says false (its VJP gives the same gradients with the outputs freed).
  bool vjp_reads_outputs = true;
  // Forward mode. nullptr: the engine transposes the VJP instead (dg::jvp, core/forward.h), so
  // every op with a VJP has forward mode; a rule of its own is cheaper.
  JvpFn jvp;
  std::string jvp_formula;  // one line ("dy = t * (x > 0)")
  LabelFn label;            // DOT label; default: name plus non-default attributes
  SampleFn sample;       // random valid inputs for the property tests (every built-in op has one)
  bool builtin = false;  // registered by the library itself (set by the registry)

  int required_inputs() const;
  // The spec of the i-th given input (a variadic last input covers every position from its own).
  const InputSpec& input_spec(size_t i) const;
  // The name of the i-th given input as messages show it ("x", or "x3" for a variadic input).
  std::string input_name(size_t i) const;
  bool variadic() const { return !inputs.empty() && inputs.back().variadic; }
  int attr_index(std::string_view name) const;  // -1 if absent
};

// Registers an op (from the library or from user code). Throws if the name is taken or the
// definition is incomplete. Returns the stored definition (its address is stable).
const OpDef& register_op(OpDef def);

// The library's own op families live in the ops layer, above this one: core knows no op. The
// ops layer hands the registry one function that registers them all (every program that
// includes deltagraph/ops/ops.h does so before its own static initialisers run), and the
// registry calls it once, before the first lookup. That function registers each op with
// register_builtin, which marks it as the library's own.
void install_builtin_ops(void (*register_all)());
const OpDef& register_builtin(OpDef def);
// The op called `name`; throws dg::Error listing similar names if there is none.
const OpDef& find_op(std::string_view name);
// Every registered op, sorted by name.
std::vector<const OpDef*> ops();

// Fills in defaults and checks names and types: unknown or missing attributes and wrong types
// are errors naming the op and the attribute.
Attrs make_attrs(const OpDef& op, const AttrMap& given);

// Applies an op to Vars: validates, runs the forward kernel and, if recording, puts a node on
// the tape. The generic path behind every typed op function.
std::vector<Var> call(const OpDef& op, std::span<const Var> inputs, Attrs attrs,
                      SourceLocation location = SourceLocation::current());
// call() with a context: state the op's shape rule, kernel, VJP and JVP see as
// OpCall/VjpContext/JvpContext::context, kept alive with the recorded node (dg::checkpoint hands
// its segment's program this way).
std::vector<Var> call_with_context(const OpDef& op, std::span<const Var> inputs, Attrs attrs,
                                   std::shared_ptr<const void> context,
                                   SourceLocation location = SourceLocation::current());
// call() for ops whose first output is all the caller wants, without the vector in between (the
// typed functions' path).
Var call_first(const OpDef& op, std::span<const Var> inputs, Attrs attrs,
               SourceLocation location = SourceLocation::current());
std::vector<Var> call(std::string_view name, std::vector<Var> inputs, const AttrMap& attrs = {},
                      SourceLocation location = SourceLocation::current());

// The label an op gets in DOT graphs: "conv2d k5x5 s2 p1 g2".
std::string op_label(const OpDef& op, const Attrs& attrs, std::span<const Shape> input_shapes = {});
// The default label: the op's name, then each attribute that differs from its default.
std::string default_label(const OpDef& op, const Attrs& attrs);
// A pair in label form: "2" for [2,2], "2x1" for [2,1].
std::string pair_label(const Ints& pair);

}  // namespace dg
