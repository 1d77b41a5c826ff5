// deltagraph: optimisers (SGD with momentum/Nesterov/weight decay, Adam/AdamW) and
// learning-rate schedules.
//
//   dg::SGD opt(params, {.lr = 0.05, .momentum = 0.9, .nesterov = true, .weight_decay = 5e-4});
//   dg::CosineLR schedule(0.05, /*total_epochs=*/10);
//   for (int64_t epoch = 0; epoch < 10; ++epoch) {
//     opt.set_lr(schedule(epoch));
//     for (...) { opt.zero_grad(); dg::backward(loss); opt.step(); }
//   }
//
// The update formulas are PyTorch's (torch.optim.SGD, torch.optim.Adam/AdamW), computed in the
// parameter's dtype. step() reads Param::grad() and updates the weights in place (under
// dg::NoGrad); parameters without a gradient are skipped and keep their state. Because the
// update is in place, a graph recorded before step() sees the new weights: differentiate it
// before stepping.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "deltagraph/train/nn.h"

namespace dg {

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // One update of every parameter that has a gradient.
  virtual void step() = 0;
  // Resets the gradients of the optimised parameters.
  void zero_grad() { params_.zero_grad(); }

  double lr() const { return lr_; }
  // Sets the learning rate for the following steps (what a schedule does once per epoch).
  void set_lr(double lr);
  const ParamList& params() const { return params_; }

  // "sgd" or "adam"; checkpoints record it so state is never loaded into the wrong kind.
  virtual std::string kind() const = 0;
  // The state carried between steps, one tensor per parameter and slot, named
  // "<param name>.<slot>": SGD "momentum_buffer"; Adam "exp_avg", "exp_avg_sq" and "step"
  // (int64 scalar). A parameter that has not been stepped yet has no entries.
  virtual TensorMap state() const = 0;
  // Replaces the state with `state` (as returned by state()), after checking every name, dtype
  // and shape against the parameters; on error nothing is changed.
  virtual void load_state(const TensorMap& state) = 0;

 protected:
  Optimizer(ParamList params, double lr, const char* who);

  ParamList params_;
  double lr_;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;      // 0: plain SGD
  double dampening = 0;     // scales the new gradient in the momentum buffer by (1 - dampening)
  bool nesterov = false;    // needs momentum > 0 and dampening 0
  double weight_decay = 0;  // L2 penalty: adds weight_decay * w to the gradient
};

// g = grad + wd*w; buf = g (first step) or momentum*buf + (1-dampening)*g;
// d = g + momentum*buf (Nesterov) or buf (momentum) or g; w -= lr*d.
class SGD : public Optimizer {
 public:
  // Optimises every parameter of `params` (the list is copied; Params are shared handles, so
  // parameters added to the list later are not optimised).
  SGD(const ParamList& params, SGDOptions options = {});
  // Parameters without a ParamList; state names use Param::name() or the position ("0", "1").
  SGD(const std::vector<Param>& params, SGDOptions options = {});

  void step() override;
  std::string kind() const override { return "sgd"; }
  TensorMap state() const override;
  void load_state(const TensorMap& state) override;
  const SGDOptions& options() const { return options_; }

 private:
  SGDOptions options_;
  std::vector<Tensor> momentum_buffers_;  // undefined until a parameter's first step
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  // false: Adam's L2 penalty (added to the gradient); true: AdamW's decoupled decay
  // (w -= lr*wd*w before the update).
  bool decoupled_weight_decay = false;
};

// t += 1; g = grad (+ wd*w); m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
// w -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps).
class Adam : public Optimizer {
 public:
  Adam(const ParamList& params, AdamOptions options = {});
  Adam(const std::vector<Param>& params, AdamOptions options = {});

  void step() override;
  std::string kind() const override { return "adam"; }
  TensorMap state() const override;
  void load_state(const TensorMap& state) override;
  const AdamOptions& options() const { return options_; }

 private:
  struct Slot {
    Tensor exp_avg, exp_avg_sq;  // undefined until the parameter's first step
    int64_t step = 0;
  };
  AdamOptions options_;
  std::vector<Slot> slots_;
};

// Learning-rate schedules are pure functions of the (possibly fractional) epoch, so resuming
// from a checkpoint needs only the epoch number.

// base_lr * gamma^floor(epoch / step_epochs): e.g. divide by 10 every 30 epochs.
class StepLR {
 public:
  StepLR(double base_lr, int64_t step_epochs, double gamma = 0.1);
  double operator()(double epoch) const;

 private:
  double base_lr_;
  int64_t step_epochs_;
  double gamma_;
};

// Cosine annealing from base_lr at epoch 0 to min_lr at total_epochs (and after):
// min_lr + (base_lr - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2. Pass a fractional
// epoch (epoch + batch / batches) to anneal per batch.
class CosineLR {
 public:
  CosineLR(double base_lr, double total_epochs, double min_lr = 0);
  double operator()(double epoch) const;

 private:
  double base_lr_, total_epochs_, min_lr_;
};

}  // namespace dg
