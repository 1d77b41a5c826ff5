// Optimisers and learning-rate schedules. Updates are plain loops over each parameter's
// storage (no ops, nothing recorded).
#include "deltagraph/train/optim.h"

#include <omp.h>

#include <cmath>
#include <numbers>

#include "deltagraph/core/tape.h"

namespace dg {

namespace {

ParamList list_of(const std::vector<Param>& params, const char* who) {
  ParamList list;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].defined()) fail("{}: parameter {} is undefined", who, i);
    const std::string& name = params[i].name();
    list.add(name.empty() || list.contains(name) ? std::to_string(i) : name, params[i]);
  }
  return list;
}

void check_finite_nonnegative(const char* who, const char* what, double value) {
  if (!(value >= 0) || !std::isfinite(value))
    fail("{}: {} must be a finite number >= 0, got {}", who, what, value);
}

// The gradient of `p` as a tensor of p's dtype and shape, or undefined if it has none.
const Tensor* gradient_of(const NamedParam& entry, const char* who) {
  const Tensor& g = entry.param.grad();
  if (!g.defined()) return nullptr;
  if (g.dtype() != entry.param.dtype() || !(g.shape() == entry.param.shape()))
    fail("{}: the gradient of '{}' is {} {} but the parameter is {} {}", who, entry.name,
         dtype_name(g.dtype()), g.shape(), dtype_name(entry.param.dtype()), entry.param.shape());
  return &g;
}

template <class F>
void with_float_type(DType dtype, F&& f) {
  if (dtype == DType::f32)
    f(float{});
  else
    f(double{});
}

// Splits every key of `state` into (parameter index, slot) and checks it against `params` and
// `slots`; every tensor must have the parameter's shape and dtype, except "step" (int64 []).
// Returns per parameter a map slot -> tensor.
std::vector<std::map<std::string, Tensor>> parse_state(const ParamList& params,
                                                       const TensorMap& state,
                                                       const std::vector<std::string>& slots,
                                                       const char* who) {
  std::vector<std::map<std::string, Tensor>> parsed(params.size());
  for (const auto& [key, tensor] : state) {
    bool matched = false;
    for (const std::string& slot : slots) {
      if (key.size() <= slot.size() + 1 || !key.ends_with("." + slot)) continue;
      const std::string name = key.substr(0, key.size() - slot.size() - 1);
      const int64_t index = params.index_of(name);
      if (index < 0) continue;
      const Param& p = params[index].param;
      const bool is_step = slot == "step";
      const Shape shape = is_step ? Shape{} : p.shape();
      const DType dtype = is_step ? DType::i64 : p.dtype();
      if (!tensor.defined() || tensor.dtype() != dtype || !(tensor.shape() == shape))
        fail("{}: state '{}' must be {} {} but is {}", who, key, dtype_name(dtype), shape,
             tensor.defined() ? fmt::format("{} {}", dtype_name(tensor.dtype()), tensor.shape())
                              : std::string("undefined"));
      parsed[index][slot] = tensor;
      matched = true;
      break;
    }
    if (!matched) {
      std::string expected;
      for (const std::string& slot : slots) expected += (expected.empty() ? "" : ", ") + slot;
      fail(
          "{}: state '{}' does not belong to this optimiser (expected '<parameter name>.<slot>' "
          "with a parameter of the model and slot {})",
          who, key, expected);
    }
  }
  return parsed;
}

}  // namespace

Optimizer::Optimizer(ParamList params, double lr, const char* who) : params_(std::move(params)) {
  for (const NamedParam& e : params_)
    if (!is_floating(e.param.dtype()))
      fail("{}: parameter '{}' is int64; only float32/float64 parameters can be optimised", who,
           e.name);
  set_lr(lr);
}

void Optimizer::set_lr(double lr) {
  check_finite_nonnegative("Optimizer::set_lr", "the learning rate", lr);
  lr_ = lr;
}

// ---- SGD ------------------------------------------------------------------------------------

namespace {
void check_sgd(const SGDOptions& o) {
  check_finite_nonnegative("SGD", "momentum", o.momentum);
  check_finite_nonnegative("SGD", "weight_decay", o.weight_decay);
  if (!(o.dampening >= 0 && o.dampening <= 1))
    fail("SGD: dampening must be in [0, 1], got {}", o.dampening);
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
    fail(
        "SGD: Nesterov momentum needs momentum > 0 and dampening 0 (got momentum {}, dampening {})",
        o.momentum, o.dampening);
}
}  // namespace

SGD::SGD(const ParamList& params, SGDOptions options)
    : Optimizer(params, options.lr, "SGD"), options_(options) {
  check_sgd(options_);
  momentum_buffers_.resize(params_.size());
}

SGD::SGD(const std::vector<Param>& params, SGDOptions options)
    : SGD(list_of(params, "SGD"), options) {}

void SGD::step() {
  NoGrad no_grad;
  const SGDOptions& o = options_;
  for (size_t i = 0; i < params_.size(); ++i) {
    NamedParam entry = params_[i];
    const Tensor* grad = gradient_of(entry, "SGD::step");
    if (!grad) continue;
    Tensor& w = entry.param.mutable_value();
    Tensor& buffer = momentum_buffers_[i];
    const bool first = !buffer.defined();
    if (o.momentum != 0 && first) buffer = Tensor(w.shape(), w.dtype());
    with_float_type(w.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T lr = static_cast<T>(lr_), wd = static_cast<T>(o.weight_decay);
      const T momentum = static_cast<T>(o.momentum), keep = static_cast<T>(1 - o.dampening);
      T* __restrict wp = w.data<T>();
      const T* __restrict gp = grad->data<T>();
      T* bp = o.momentum != 0 ? buffer.data<T>() : nullptr;
      const int64_t n = w.numel();
      if (!bp && o.weight_decay == 0) {
        // Plain SGD, the common case: one vectorised pass at memory speed, split over the
        // threads when there is enough of it.
#pragma omp parallel for simd if (n >= (int64_t{1} << 18) && !omp_in_parallel())
        for (int64_t k = 0; k < n; ++k) wp[k] -= lr * gp[k];
        return;
      }
      for (int64_t k = 0; k < n; ++k) {
        T d = gp[k];
        if (o.weight_decay != 0) d += wd * wp[k];
        if (bp) {
          bp[k] = first ? d : momentum * bp[k] + keep * d;
          d = o.nesterov ? d + momentum * bp[k] : bp[k];
        }
        wp[k] -= lr * d;
      }
    });
  }
}

TensorMap SGD::state() const {
  TensorMap state;
  for (size_t i = 0; i < params_.size(); ++i)
    if (momentum_buffers_[i].defined())
      state[params_[i].name + ".momentum_buffer"] = momentum_buffers_[i].clone();
  return state;
}

void SGD::load_state(const TensorMap& state) {
  auto parsed = parse_state(params_, state, {"momentum_buffer"}, "SGD::load_state");
  for (size_t i = 0; i < params_.size(); ++i) {
    auto it = parsed[i].find("momentum_buffer");
    momentum_buffers_[i] = it == parsed[i].end() ? Tensor() : it->second.clone();
  }
}

// ---- Adam -----------------------------------------------------------------------------------

namespace {
void check_adam(const AdamOptions& o) {
  check_finite_nonnegative("Adam", "weight_decay", o.weight_decay);
  if (!(o.beta1 >= 0 && o.beta1 < 1)) fail("Adam: beta1 must be in [0, 1), got {}", o.beta1);
  if (!(o.beta2 >= 0 && o.beta2 < 1)) fail("Adam: beta2 must be in [0, 1), got {}", o.beta2);
  if (!(o.eps >= 0) || !std::isfinite(o.eps))
    fail("Adam: eps must be a finite number >= 0, got {}", o.eps);
}
}  // namespace

Adam::Adam(const ParamList& params, AdamOptions options)
    : Optimizer(params, options.lr, "Adam"), options_(options) {
  check_adam(options_);
  slots_.resize(params_.size());
}

Adam::Adam(const std::vector<Param>& params, AdamOptions options)
    : Adam(list_of(params, "Adam"), options) {}

namespace {

enum class WeightDecay { none, l2, decoupled };

// One parameter's Adam update. The weight decay's mode is a template argument and the arrays
// are declared unaliased, so the loop has no branch and vectorises (1.29 -> 0.25 ms per step
// for the classifier's 330k parameters). Every element gets the same operations in the same
// order as in a scalar loop (no FMA contraction under -std=c++20), so the same rounding.
template <class T>
struct AdamUpdate {
  T b1, b2, wd, decay, step_size, c2, eps;

  template <WeightDecay mode>
  void run(T* __restrict wp, const T* __restrict gp, T* __restrict m, T* __restrict v,
           int64_t n) const {
    const T one_minus_b1 = 1 - b1, one_minus_b2 = 1 - b2;
    for (int64_t k = 0; k < n; ++k) {
      T g = gp[k];
      if constexpr (mode == WeightDecay::decoupled) wp[k] *= decay;
      if constexpr (mode == WeightDecay::l2) g += wd * wp[k];
      m[k] = b1 * m[k] + one_minus_b1 * g;
      v[k] = b2 * v[k] + one_minus_b2 * g * g;
      wp[k] -= step_size * m[k] / (std::sqrt(v[k]) / c2 + eps);
    }
  }
};

}  // namespace

void Adam::step() {
  NoGrad no_grad;
  const AdamOptions& o = options_;
  for (size_t i = 0; i < params_.size(); ++i) {
    NamedParam entry = params_[i];
    const Tensor* grad = gradient_of(entry, "Adam::step");
    if (!grad) continue;
    Tensor& w = entry.param.mutable_value();
    Slot& s = slots_[i];
    if (!s.exp_avg.defined()) {
      s.exp_avg = Tensor::zeros(w.shape(), w.dtype());
      s.exp_avg_sq = Tensor::zeros(w.shape(), w.dtype());
    }
    ++s.step;
    // PyTorch's arrangement of the bias corrections (same rounding as torch.optim.Adam).
    const double correction1 = 1 - std::pow(o.beta1, static_cast<double>(s.step));
    const double correction2_sqrt = std::sqrt(1 - std::pow(o.beta2, static_cast<double>(s.step)));
    with_float_type(w.dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2);
      const T wd = static_cast<T>(o.weight_decay), eps = static_cast<T>(o.eps);
      const T step_size = static_cast<T>(lr_ / correction1);
      const T decay = static_cast<T>(1 - lr_ * o.weight_decay);
      const T c2 = static_cast<T>(correction2_sqrt);
      const AdamUpdate<T> update{b1, b2, wd, decay, step_size, c2, eps};
      T* wp = w.data<T>();
      const T* gp = grad->data<T>();
      T* m = s.exp_avg.data<T>();
      T* v = s.exp_avg_sq.data<T>();
      const int64_t n = w.numel();
      if (o.weight_decay == 0)
        update.template run<WeightDecay::none>(wp, gp, m, v, n);
      else if (o.decoupled_weight_decay)
        update.template run<WeightDecay::decoupled>(wp, gp, m, v, n);
      else
        update.template run<WeightDecay::l2>(wp, gp, m, v, n);
    });
  }
}

TensorMap Adam::state() const {
  TensorMap state;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Slot& s = slots_[i];
    if (!s.exp_avg.defined()) continue;
    const std::string& name = params_[i].name;
    state[name + ".exp_avg"] = s.exp_avg.clone();
    state[name + ".exp_avg_sq"] = s.exp_avg_sq.clone();
    state[name + ".step"] = Tensor::scalar(static_cast<double>(s.step), DType::i64);
  }
  return state;
}

void Adam::load_state(const TensorMap& state) {
  auto parsed = parse_state(params_, state, {"exp_avg", "exp_avg_sq", "step"}, "Adam::load_state");
  std::vector<Slot> slots(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = parsed[i];
    if (p.empty()) continue;
    for (const char* slot : {"exp_avg", "exp_avg_sq", "step"})
      if (!p.contains(slot))
        fail("Adam::load_state: parameter '{}' has some state but no '{}.{}'", params_[i].name,
             params_[i].name, slot);
    const int64_t step = p.at("step").data<int64_t>()[0];
    if (step < 1)
      fail("Adam::load_state: '{}.step' is {}; a parameter with moments has taken at least 1 step",
           params_[i].name, step);
    slots[i] = {p.at("exp_avg").clone(), p.at("exp_avg_sq").clone(), step};
  }
  slots_ = std::move(slots);
}

// ---- schedules --------------------------------------------------------------------------------

StepLR::StepLR(double base_lr, int64_t step_epochs, double gamma)
    : base_lr_(base_lr), step_epochs_(step_epochs), gamma_(gamma) {
  check_finite_nonnegative("StepLR", "base_lr", base_lr);
  check_finite_nonnegative("StepLR", "gamma", gamma);
  if (step_epochs < 1) fail("StepLR: step_epochs must be at least 1, got {}", step_epochs);
}

double StepLR::operator()(double epoch) const {
  if (!(epoch >= 0)) fail("StepLR: epoch must be >= 0, got {}", epoch);
  return base_lr_ * std::pow(gamma_, std::floor(epoch / static_cast<double>(step_epochs_)));
}

CosineLR::CosineLR(double base_lr, double total_epochs, double min_lr)
    : base_lr_(base_lr), total_epochs_(total_epochs), min_lr_(min_lr) {
  check_finite_nonnegative("CosineLR", "base_lr", base_lr);
  check_finite_nonnegative("CosineLR", "min_lr", min_lr);
  if (!(total_epochs > 0) || !std::isfinite(total_epochs))
    fail("CosineLR: total_epochs must be > 0, got {}", total_epochs);
}

double CosineLR::operator()(double epoch) const {
  if (!(epoch >= 0)) fail("CosineLR: epoch must be >= 0, got {}", epoch);
  const double progress = std::min(epoch / total_epochs_, 1.0);
  return min_lr_ + (base_lr_ - min_lr_) * (1 + std::cos(std::numbers::pi * progress)) / 2;
}

}  // namespace dg
