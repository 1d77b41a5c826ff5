// The elementwise family: arithmetic (add, sub, mul, div with numpy broadcasting, neg, scalar
// add/multiply, exp, log) and activations (relu, leaky_relu, elu, sigmoid, tanh) with the
// derivative ops their VJPs are made of.
//
// Kinks follow PyTorch: relu'(0) = 0, leaky_relu'(0) = negative_slope and elu'(0) = alpha (the
// x <= 0 branch).
#include <cmath>

#include "kernels/elementwise.h"
#include "op_util.h"

namespace dg {

namespace {

Shape broadcast_shape(const OpCall& c) {
  const Shape& a = c.input(0).shape();
  const Shape& b = c.input(1).shape();
  Shape out;
  out.resize(std::max(a.size(), b.size()), 1);
  for (int i = 0; i < out.size(); ++i) {
    int ia = a.size() - out.size() + i, ib = b.size() - out.size() + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1)
      shape_fail(c,
                 "a is {} and b is {}; they do not broadcast: axis {} from the right is {} "
                 "vs {} (sizes must match or one must be 1)",
                 a, b, out.size() - i, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::vector<TensorSpec> binary_shape(const OpCall& c) {
  return {{broadcast_shape(c), c.input(0).dtype()}};
}

// a and b of shapes that broadcast together; b positive when it divides.
SampleFn binary_sample(bool positive_b) {
  return [positive_b](Sampler& s) {
    const Shape full = sample_shape(s, 0, 4);
    Shape a = full, b = sample_broadcastable(s, full);
    if (s.boolean()) std::swap(a, b);
    return OpSample{{s.smooth(a), positive_b ? s.positive(b) : s.smooth(b)}, {}};
  };
}

// x of any shape, rank 0 to 4; batch-separable when it has a batch axis.
SampleFn unary_sample(bool positive = false, AttrMap attrs = {}) {
  return [positive, attrs](Sampler& s) {
    const Shape shape = sample_shape(s, 0, 4);
    return OpSample{{positive ? s.positive(shape) : s.smooth(shape)},
                    attrs,
                    shape.size() ? all_batched(1) : std::vector<bool>{}};
  };
}

// What an op's VJP reads besides the cotangent (OpDef::vjp_reads_outputs): dx = g * (x > 0)
// reads the input, dx = g * y the output.
enum class VjpReads { inputs, inputs_and_outputs };

// Registers a broadcasting binary op whose forward is y = f(a, b).
template <class F>
void binary(std::string name, std::string summary, std::string formula, F f, VjpFn vjp,
            VjpReads reads, JvpFn jvp, std::string jvp_formula,
            SampleFn sample = binary_sample(false)) {
  register_builtin({
      .name = std::move(name),
      .summary = std::move(summary),
      .inputs = {{"a"}, {"b"}},
      .shape = binary_shape,
      .forward =
          [f](const OpCall& c, std::span<const TensorSpec> specs) {
            Tensor y(specs[0].shape, specs[0].dtype);
            dispatch_float(y.dtype(), [&](auto t) {
              using T = decltype(t);
              kernels::zip<T>(c.input(0), c.input(1), y, [&](T a, T b) { return f(a, b); });
            });
            return std::vector<Tensor>{y};
          },
      .vjp = std::move(vjp),
      .vjp_formula = std::move(formula),
      .vjp_reads_outputs = reads == VjpReads::inputs_and_outputs,
      .jvp = std::move(jvp),
      .jvp_formula = std::move(jvp_formula),
      .sample = std::move(sample),
  });
}

// Registers an elementwise unary op y = f(x) (attributes are read by f through Attrs). Its
// Jacobian is diagonal, so its JVP is its VJP applied to the tangent (diagonal_jvp).
template <class F>
void unary(std::string name, std::string summary, std::string formula, std::vector<AttrSpec> attrs,
           F f, VjpFn vjp, VjpReads reads, SampleFn sample = unary_sample()) {
  register_builtin({
      .name = std::move(name),
      .summary = std::move(summary),
      .inputs = {{"x"}},
      .attrs = std::move(attrs),
      .shape = [](const OpCall& c) { return same_as_input(c); },
      .forward =
          [f](const OpCall& c, std::span<const TensorSpec> specs) {
            Tensor y(specs[0].shape, specs[0].dtype);
            dispatch_float(y.dtype(), [&](auto t) {
              using T = decltype(t);
              kernels::map<T>(c.input(0), y, f(T{}, c.attrs));
            });
            return std::vector<Tensor>{y};
          },
      .vjp = std::move(vjp),
      .vjp_formula = std::move(formula),
      .vjp_reads_outputs = reads == VjpReads::inputs_and_outputs,
      .jvp = diagonal_jvp,
      .jvp_formula = "dy = dy/dx * t (diagonal: the VJP applied to t)",
      .sample = std::move(sample),
  });
}

AttrSpec alpha_attr() {
  return {"alpha", AttrType::real, AttrValue(1.0), "scale of the negative part", "alpha="};
}

AttrSpec scalar_attr() { return {"c", AttrType::real, std::nullopt, "the scalar", "c="}; }

}  // namespace

namespace {

// ---- VJPs and the ops that are not made by binary() or unary() ----------------------------

std::vector<Var> add_vjp(const VjpContext& c) {
  const Var& g = c.grad_output(0);
  return {sum_to(g, c.input(0).shape()), sum_to(g, c.input(1).shape())};
}

std::vector<Var> sub_vjp(const VjpContext& c) {
  const Var& g = c.grad_output(0);
  return {sum_to(g, c.input(0).shape()), c.needs(1) ? neg(sum_to(g, c.input(1).shape())) : Var()};
}

std::vector<Var> mul_vjp(const VjpContext& c) {
  const Var& g = c.grad_output(0);
  return {c.needs(0) ? sum_to(mul(g, c.input(1)), c.input(0).shape()) : Var(),
          c.needs(1) ? sum_to(mul(g, c.input(0)), c.input(1).shape()) : Var()};
}

std::vector<Var> div_vjp(const VjpContext& c) {
  const Var& g = c.grad_output(0);
  const Var& b = c.input(1);
  return {c.needs(0) ? sum_to(div(g, b), c.input(0).shape()) : Var(),
          c.needs(1) ? neg(sum_to(div(mul(g, c.output(0)), b), b.shape())) : Var()};
}

// A broadcast input's tangent, widened to the output's shape.
Var widened(const Var& t, const Shape& shape) {
  return t.shape() == shape ? t : broadcast_to(t, shape);
}

std::vector<Var> add_jvp(const JvpContext& c) {
  const Shape& out = c.output(0).shape();
  if (!c.has_tangent(1)) return {widened(c.tangent(0), out)};
  if (!c.has_tangent(0)) return {widened(c.tangent(1), out)};
  return {add(c.tangent(0), c.tangent(1))};
}

std::vector<Var> sub_jvp(const JvpContext& c) {
  const Shape& out = c.output(0).shape();
  if (!c.has_tangent(1)) return {widened(c.tangent(0), out)};
  if (!c.has_tangent(0)) return {widened(neg(c.tangent(1)), out)};
  return {sub(c.tangent(0), c.tangent(1))};
}

std::vector<Var> mul_jvp(const JvpContext& c) {
  Var ta, tb;
  if (c.has_tangent(0)) ta = mul(c.tangent(0), c.input(1));
  if (c.has_tangent(1)) tb = mul(c.input(0), c.tangent(1));
  return {ta.defined() && tb.defined() ? add(ta, tb) : ta.defined() ? ta : tb};
}

std::vector<Var> div_jvp(const JvpContext& c) {
  Var ta, tb;
  if (c.has_tangent(0)) ta = div(c.tangent(0), c.input(1));
  if (c.has_tangent(1)) tb = div(mul(c.tangent(1), c.output(0)), c.input(1));
  if (ta.defined() && tb.defined()) return {sub(ta, tb)};
  return {ta.defined() ? ta : neg(tb)};
}

std::vector<Var> neg_vjp(const VjpContext& c) { return {neg(c.grad_output(0))}; }

std::vector<Var> add_scalar_vjp(const VjpContext& c) { return {c.grad_output(0)}; }

std::vector<Var> mul_scalar_vjp(const VjpContext& c) {
  return {mul_scalar(c.grad_output(0), c.attrs.real("c"))};
}

std::vector<Var> exp_vjp(const VjpContext& c) { return {mul(c.grad_output(0), c.output(0))}; }

std::vector<Var> log_vjp(const VjpContext& c) { return {div(c.grad_output(0), c.input(0))}; }

std::vector<Var> relu_vjp(const VjpContext& c) {
  return {relu_backward(c.grad_output(0), c.input(0))};
}

std::vector<Var> elu_vjp(const VjpContext& c) {
  return {mul(c.grad_output(0), elu_grad(c.input(0), c.attrs.real("alpha")))};
}

// ---- leaky_relu --------------------------------------------------------------------------------
// y = x where x > 0, else negative_slope * x (PyTorch's F.leaky_relu; at x == 0 the slope is
// negative_slope, as in PyTorch's backward). Its VJP, made of registered ops so that it can be
// differentiated again: relu_backward(g, x) keeps g where x > 0, and the rest is scaled:
//   dx = (1 - s) * relu_backward(g, x) + s * g.
std::vector<Var> leaky_relu_vjp(const VjpContext& c) {
  const double slope = c.attrs.real("negative_slope");
  const Var& g = c.grad_output(0);
  return {add(mul_scalar(relu_backward(g, c.input(0)), 1.0 - slope), mul_scalar(g, slope))};
}

// Values away from the kink at 0; slopes below 0, between 0 and 1, and above 1 all count.
OpSample leaky_relu_sample(Sampler& s) {
  const Shape shape = sample_shape(s, 0, 4);
  return OpSample{{s.smooth(shape)},
                  {{"negative_slope", s.choose({0.01, 0.2, -0.5, 1.5})}},
                  shape.size() ? all_batched(1) : std::vector<bool>{}};
}

// d/dx is 0 where x > 0 and alpha*exp(x) elsewhere: elu_grad(x) minus its x > 0 part.
std::vector<Var> elu_grad_vjp(const VjpContext& c) {
  const Var& g = c.grad_output(0);
  return {sub(mul(g, c.output(0)), relu_backward(g, c.input(0)))};
}

std::vector<Var> sigmoid_vjp(const VjpContext& c) {
  const Var& y = c.output(0);
  return {mul(c.grad_output(0), mul(y, 1.0 - y))};
}

std::vector<Var> tanh_vjp(const VjpContext& c) {
  const Var& y = c.output(0);
  return {mul(c.grad_output(0), 1.0 - mul(y, y))};
}

std::vector<TensorSpec> relu_backward_shape(const OpCall& c) {
  if (!(c.input(0).shape() == c.input(1).shape()))
    shape_fail(c, "g is {} and x is {}; they must have the same shape", c.input(0).shape(),
               c.input(1).shape());
  return same_as_input(c);
}

std::vector<Tensor> relu_backward_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  Tensor y(specs[0].shape, specs[0].dtype);
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    kernels::zip<T>(c.input(0), c.input(1), y, [](T g, T x) { return x <= T(0) ? T(0) : g; });
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> relu_backward_vjp(const VjpContext& c) {
  return {relu_backward(c.grad_output(0), c.input(1)), Var()};
}

OpSample relu_backward_sample(Sampler& s) {
  const Shape shape = sample_shape(s, 1, 4);
  return OpSample{{s.smooth(shape), s.smooth(shape)}, {}, all_batched(2)};
}

// Linear in g; piecewise constant in x, so x gets no gradient (vjp below).
OpDef relu_backward_def() {
  return {
      .name = "relu_backward",
      .summary = "y = g * (x > 0), relu's VJP as an op",
      .inputs = {{"g"}, {"x"}},
      .shape = relu_backward_shape,
      .forward = relu_backward_kernel,
      .vjp = relu_backward_vjp,
      .vjp_formula = "dg = relu_backward(gg, x), dx = 0",
      .vjp_reads_outputs = false,
      .sample = relu_backward_sample,
  };
}

}  // namespace

static void register_activations();

void register_elementwise_ops() {
  register_activations();
  binary(
      "add", "y = a + b (broadcasting)", "da = sum_to(g, a.shape), db = sum_to(g, b.shape)",
      [](auto a, auto b) { return a + b; }, add_vjp, VjpReads::inputs, add_jvp, "dy = ta + tb");
  binary(
      "sub", "y = a - b (broadcasting)", "da = sum_to(g, a.shape), db = -sum_to(g, b.shape)",
      [](auto a, auto b) { return a - b; }, sub_vjp, VjpReads::inputs, sub_jvp, "dy = ta - tb");
  binary(
      "mul", "y = a * b (broadcasting)", "da = sum_to(g * b, a.shape), db = sum_to(g * a, b.shape)",
      [](auto a, auto b) { return a * b; }, mul_vjp, VjpReads::inputs, mul_jvp,
      "dy = ta * b + a * tb");
  binary(
      "div", "y = a / b (broadcasting)",
      "da = sum_to(g / b, a.shape), db = -sum_to(g * y / b, b.shape)",
      [](auto a, auto b) { return a / b; }, div_vjp, VjpReads::inputs_and_outputs, div_jvp,
      "dy = ta / b - tb * y / b", binary_sample(true));
  unary(
      "neg", "y = -x", "dx = -g", {}, [](auto, const Attrs&) { return [](auto x) { return -x; }; },
      neg_vjp, VjpReads::inputs);
  unary(
      "add_scalar", "y = x + c", "dx = g", {scalar_attr()},
      [](auto t, const Attrs& a) {
        using T = decltype(t);
        T s = static_cast<T>(a.real("c"));
        return [s](T x) { return x + s; };
      },
      add_scalar_vjp, VjpReads::inputs, unary_sample(false, {{"c", 0.75}}));
  unary(
      "mul_scalar", "y = x * c", "dx = c * g", {scalar_attr()},
      [](auto t, const Attrs& a) {
        using T = decltype(t);
        T s = static_cast<T>(a.real("c"));
        return [s](T x) { return x * s; };
      },
      mul_scalar_vjp, VjpReads::inputs, unary_sample(false, {{"c", -1.5}}));
  unary(
      "exp", "y = exp(x)", "dx = g * y", {},
      [](auto, const Attrs&) { return [](auto x) { return std::exp(x); }; }, exp_vjp,
      VjpReads::inputs_and_outputs);
  unary(
      "log", "y = log(x)", "dx = g / x", {},
      [](auto, const Attrs&) { return [](auto x) { return std::log(x); }; }, log_vjp,
      VjpReads::inputs, unary_sample(true));
}

static void register_activations() {
  unary(
      "relu", "y = max(x, 0)", "dx = relu_backward(g, x) = g * (x > 0)", {},
      [](auto t, const Attrs&) {
        using T = decltype(t);
        // Written as !(x <= 0) so that NaN propagates, as in PyTorch.
        return [](T x) { return !(x <= T(0)) ? x : T(0); };
      },
      relu_vjp, VjpReads::inputs);

  register_builtin(relu_backward_def());

  unary(
      "elu", "y = x if x > 0 else alpha*(exp(x)-1)", "dx = g * elu_grad(x)", {alpha_attr()},
      [](auto t, const Attrs& a) {
        using T = decltype(t);
        T alpha = static_cast<T>(a.real("alpha"));
        return [alpha](T x) { return x > T(0) ? x : alpha * std::expm1(x); };
      },
      elu_vjp, VjpReads::inputs, unary_sample(false, {{"alpha", 0.7}}));

  unary(
      "leaky_relu", "y = x if x > 0 else negative_slope * x",
      "dx = (1 - negative_slope) * relu_backward(g, x) + negative_slope * g",
      {{"negative_slope", AttrType::real, AttrValue(0.01), "slope for x <= 0", "slope="}},
      [](auto t, const Attrs& a) {
        using T = decltype(t);
        const T slope = static_cast<T>(a.real("negative_slope"));
        return [slope](T x) { return x > T(0) ? x : slope * x; };  // NaN stays NaN
      },
      leaky_relu_vjp, VjpReads::inputs, leaky_relu_sample);

  unary(
      "elu_grad", "y = 1 if x > 0 else alpha*exp(x) (the derivative of elu)",
      "dx = g * elu_grad(x) - relu_backward(g, x)", {alpha_attr()},
      [](auto t, const Attrs& a) {
        using T = decltype(t);
        T alpha = static_cast<T>(a.real("alpha"));
        return [alpha](T x) { return x > T(0) ? T(1) : alpha * std::exp(x); };
      },
      elu_grad_vjp, VjpReads::inputs_and_outputs, unary_sample(false, {{"alpha", 1.3}}));

  unary(
      "sigmoid", "y = 1 / (1 + exp(-x))", "dx = g * y * (1 - y)", {},
      [](auto t, const Attrs&) {
        using T = decltype(t);
        // Written so that neither branch overflows: exp of a non-positive number only.
        return [](T x) {
          if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
          T e = std::exp(x);
          return e / (T(1) + e);
        };
      },
      sigmoid_vjp, VjpReads::inputs_and_outputs);

  unary(
      "tanh", "y = tanh(x)", "dx = g * (1 - y^2)", {},
      [](auto t, const Attrs&) {
        using T = decltype(t);
        return [](T x) { return std::tanh(x); };
      },
      tanh_vjp, VjpReads::inputs_and_outputs);
}

// ---- typed front ------------------------------------------------------------------------

Var add(const Var& a, const Var& b, Loc loc) {
  static const OpDef& op = builtin("add");
  return call_op(op, {a, b}, loc);
}
Var sub(const Var& a, const Var& b, Loc loc) {
  static const OpDef& op = builtin("sub");
  return call_op(op, {a, b}, loc);
}
Var mul(const Var& a, const Var& b, Loc loc) {
  static const OpDef& op = builtin("mul");
  return call_op(op, {a, b}, loc);
}
Var div(const Var& a, const Var& b, Loc loc) {
  static const OpDef& op = builtin("div");
  return call_op(op, {a, b}, loc);
}
Var neg(const Var& x, Loc loc) {
  static const OpDef& op = builtin("neg");
  return call_op(op, {x}, loc);
}
Var add_scalar(const Var& x, double c, Loc loc) {
  static const OpDef& op = builtin("add_scalar");
  return call_op(op, {x}, Attrs(op, {{"c", c}}), loc);
}
Var mul_scalar(const Var& x, double c, Loc loc) {
  static const OpDef& op = builtin("mul_scalar");
  return call_op(op, {x}, Attrs(op, {{"c", c}}), loc);
}
Var exp(const Var& x, Loc loc) {
  static const OpDef& op = builtin("exp");
  return call_op(op, {x}, loc);
}
Var log(const Var& x, Loc loc) {
  static const OpDef& op = builtin("log");
  return call_op(op, {x}, loc);
}

Var relu(const Var& x, Loc loc) {
  static const OpDef& op = builtin("relu");
  return call_op(op, {x}, loc);
}
Var relu_backward(const Var& g, const Var& x, Loc loc) {
  static const OpDef& op = builtin("relu_backward");
  return call_op(op, {g, x}, loc);
}
Var elu(const Var& x, double alpha, Loc loc) {
  static const OpDef& op = builtin("elu");
  return call_op(op, {x}, Attrs(op, {{"alpha", alpha}}), loc);
}
Var leaky_relu(const Var& x, double negative_slope, Loc loc) {
  static const OpDef& op = builtin("leaky_relu");
  return call_op(op, {x}, Attrs(op, {{"negative_slope", negative_slope}}), loc);
}
Var elu_grad(const Var& x, double alpha, Loc loc) {
  static const OpDef& op = builtin("elu_grad");
  return call_op(op, {x}, Attrs(op, {{"alpha", alpha}}), loc);
}
Var sigmoid(const Var& x, Loc loc) {
  static const OpDef& op = builtin("sigmoid");
  return call_op(op, {x}, loc);
}
Var tanh(const Var& x, Loc loc) {
  static const OpDef& op = builtin("tanh");
  return call_op(op, {x}, loc);
}

// An operator cannot take the caller's source location as a defaulted argument; rather than
// name this file as the call site in errors and graphs, the operators give none.
constexpr Loc kNoLocation{};

Var operator+(const Var& a, const Var& b) { return add(a, b, kNoLocation); }
Var operator-(const Var& a, const Var& b) { return sub(a, b, kNoLocation); }
Var operator*(const Var& a, const Var& b) { return mul(a, b, kNoLocation); }
Var operator/(const Var& a, const Var& b) { return div(a, b, kNoLocation); }
Var operator-(const Var& x) { return neg(x, kNoLocation); }
Var operator+(const Var& a, double c) { return add_scalar(a, c, kNoLocation); }
Var operator+(double c, const Var& a) { return add_scalar(a, c, kNoLocation); }
Var operator-(const Var& a, double c) { return add_scalar(a, -c, kNoLocation); }
Var operator-(double c, const Var& a) { return add_scalar(neg(a, kNoLocation), c, kNoLocation); }
Var operator*(const Var& a, double c) { return mul_scalar(a, c, kNoLocation); }
Var operator*(double c, const Var& a) { return mul_scalar(a, c, kNoLocation); }
Var operator/(const Var& a, double c) { return mul_scalar(a, 1.0 / c, kNoLocation); }

}  // namespace dg
