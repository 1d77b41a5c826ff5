// deltagraph: named parameters and a thin set of layer helpers.
//
// A model stays a plain C++ expression; the helpers only own the weights and remember the
// options, so `conv1(x)` reads like the op it calls:
//
//   dg::ParamList params(/*seed=*/1);                       // every weight registers here
//   dg::nn::Conv2d conv1(params, "conv1", 1, 32, 5, {.padding = 2});
//   dg::nn::Linear fc(params, "fc", 32 * 14 * 14, 10);
//   auto [h, where] = dg::max_pool2d(dg::relu(conv1(x)), {.kernel_size = 2});
//   dg::Var loss = dg::softmax_xent(fc(dg::flatten(h)), labels);
//   for (const auto& [name, p] : params) fmt::print("{} {}\n", name, p.shape());
//
// Initial values depend on the ParamList's seed and the parameter's name only, so adding a
// layer does not change the others' initial values.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "deltagraph/core/var.h"
#include "deltagraph/ops/ops.h"
#include "deltagraph/train/init.h"

namespace dg {

// One entry of a ParamList; `for (const auto& [name, param] : params)` unpacks it.
struct NamedParam {
  std::string name;
  Param param;
};

// A buffer: model state that is saved and loaded with the parameters but never trained
// (batch norm's running statistics). Ops update it in place.
struct NamedBuffer {
  std::string name;
  Tensor value;
};

// The parameters of a model, in registration order, each under a unique name
// ("conv1.weight"), its buffers (non-trainable state such as "bn1.running_mean"), and its mode:
// training or evaluation, which layers with two behaviours (batch norm, dropout) honour.
// Params and buffers are shared handles: the list, its copies, the layers and the optimiser all
// see the same weights, statistics and mode.
class ParamList {
 public:
  // `seed` decides every initial value the layer helpers draw (see seed_for).
  explicit ParamList(uint64_t seed = 0) : seed_(seed) {}

  // Registers a buffer under `name` (unique among parameters and buffers) and returns it.
  // Checkpoints save and load buffers with the parameters; optimisers never see them.
  Tensor add_buffer(const std::string& name, Tensor value);
  const std::vector<NamedBuffer>& buffers() const { return buffers_; }
  // The buffer called `name`; throws dg::Error listing the known names if there is none.
  Tensor buffer(std::string_view name) const;

  // Training mode (the default): batch norm uses batch statistics and updates its buffers,
  // dropout drops. Evaluation mode: batch norm uses the buffers, dropout is the identity.
  void train(bool on = true) { *training_ = on; }
  void eval() { train(false); }
  bool training() const { return *training_; }
  // The mode as layers hold it: shared with the list and every copy of it.
  std::shared_ptr<const bool> mode() const { return training_; }

  // Registers a new Param holding `value` under `name` and returns it. Throws dg::Error if the
  // name is empty or already taken.
  Param add(const std::string& name, Tensor value);
  // Registers an existing Param (shared, not copied) under `name`; also renames it, so graphs
  // and errors show the same name.
  Param add(const std::string& name, Param param);

  // The seed for the initial value of parameter `name`: a hash of the list's seed and the name.
  uint64_t seed_for(std::string_view name) const;
  uint64_t seed() const { return seed_; }

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  std::vector<NamedParam>::const_iterator begin() const { return entries_.begin(); }
  std::vector<NamedParam>::const_iterator end() const { return entries_.end(); }
  const NamedParam& operator[](size_t index) const { return entries_.at(index); }

  // True if a parameter or a buffer is called `name`.
  bool contains(std::string_view name) const;
  // The parameter called `name`; throws dg::Error listing the known names if there is none.
  Param at(std::string_view name) const;
  // Position of parameter `name` in the list, or -1.
  int64_t index_of(std::string_view name) const;

  // Total number of scalars over all parameters.
  int64_t count() const;
  // The Params alone, in order.
  std::vector<Param> params() const;
  // Resets every parameter's accumulated gradient.
  void zero_grad();
  // A table: one line per parameter with its name, shape, dtype and count, then the total,
  // then the buffers.
  std::string summary() const;

 private:
  uint64_t seed_;
  std::vector<NamedParam> entries_;
  std::vector<NamedBuffer> buffers_;
  std::shared_ptr<bool> training_ = std::make_shared<bool>(true);
};

namespace nn {

// How a layer draws its initial weights. Biases start at zero, except with pytorch_default,
// which draws them like PyTorch does.
enum class Init : uint8_t {
  pytorch_default,  // weight and bias uniform on +-1/sqrt(fan_in), as torch.nn.Conv2d/Linear
  kaiming_uniform,  // He, for ReLU networks (gain sqrt(2), fan_in)
  kaiming_normal,
  xavier_uniform,  // Glorot, gain 1
  xavier_normal,
};

struct Conv2dLayerOptions {
  Pair stride = 1;
  Padding padding = 0;  // 1, {h, w}, {top, bottom, left, right}, "same" or "valid"
  Pair dilation = 1;
  int64_t groups = 1;
  bool bias = true;
  Init init = Init::pytorch_default;
  DType dtype = DType::f32;
};

// conv2d with weight [out, in/groups, kH, kW] ("<name>.weight") and bias [out] ("<name>.bias").
class Conv2d {
 public:
  Conv2d(ParamList& params, const std::string& name, int64_t in_channels, int64_t out_channels,
         Pair kernel_size, Conv2dLayerOptions options = {});
  Var operator()(const Var& x, Loc loc = Loc::current()) const;

  Param weight;
  Param bias;  // undefined when built with {.bias = false}
  Conv2dOptions options;
};

struct ConvTranspose2dLayerOptions {
  Pair stride = 1;
  Padding padding = 0;
  Pair output_padding = 0;
  Pair dilation = 1;
  int64_t groups = 1;
  bool bias = true;
  Init init = Init::pytorch_default;
  DType dtype = DType::f32;
};

// conv_transpose2d with weight [in, out/groups, kH, kW] and bias [out]. Kaiming and Xavier count
// fans with WeightLayout::in_out; pytorch_default uses PyTorch's own count (shape[1] * kH * kW)
// so that it draws from the same range as torch.nn.ConvTranspose2d.
class ConvTranspose2d {
 public:
  ConvTranspose2d(ParamList& params, const std::string& name, int64_t in_channels,
                  int64_t out_channels, Pair kernel_size, ConvTranspose2dLayerOptions options = {});
  Var operator()(const Var& x, Loc loc = Loc::current()) const;

  Param weight;
  Param bias;
  ConvTranspose2dOptions options;
};

struct LinearLayerOptions {
  bool bias = true;
  Init init = Init::pytorch_default;
  DType dtype = DType::f32;
};

// linear with weight [out, in] and bias [out]; x is [N, in].
class Linear {
 public:
  Linear(ParamList& params, const std::string& name, int64_t in_features, int64_t out_features,
         LinearLayerOptions options = {});
  Var operator()(const Var& x, Loc loc = Loc::current()) const;

  Param weight;
  Param bias;
};

// conv1x1 (a per-pixel linear layer) with weight [out, in, 1, 1] and bias [out].
class Conv1x1 {
 public:
  Conv1x1(ParamList& params, const std::string& name, int64_t in_channels, int64_t out_channels,
          LinearLayerOptions options = {});
  Var operator()(const Var& x, Loc loc = Loc::current()) const;

  Param weight;
  Param bias;
};

struct BatchNorm2dLayerOptions {
  double momentum = 0.1;
  double eps = 1e-5;
  DType dtype = DType::f32;
};

// batch_norm2d with weight [C] ("<name>.weight", ones), bias [C] ("<name>.bias", zeros) and the
// buffers PyTorch's BatchNorm2d has, under the same names: "<name>.running_mean" (zeros),
// "<name>.running_var" (ones) and "<name>.num_batches_tracked" (int64 scalar, counting the
// training-mode calls). Follows its ParamList's mode.
class BatchNorm2d {
 public:
  BatchNorm2d(ParamList& params, const std::string& name, int64_t channels,
              BatchNorm2dLayerOptions options = {});
  Var operator()(const Var& x, Loc loc = Loc::current()) const;

  Param weight;
  Param bias;
  Tensor running_mean, running_var, num_batches_tracked;
  BatchNorm2dLayerOptions options;

 private:
  std::shared_ptr<const bool> training_;
  std::string running_mean_name, running_var_name;
};

// dropout with probability p, following its ParamList's mode. Each call draws a new mask: the
// seed is a hash of the ParamList's seed, the layer's name and a call counter, so a run is
// reproducible from its seed.
class Dropout {
 public:
  Dropout(ParamList& params, const std::string& name, double p = 0.5);
  Var operator()(const Var& x, Loc loc = Loc::current()) const;

  double p;

 private:
  uint64_t seed_;
  mutable uint64_t calls_ = 0;
  std::shared_ptr<const bool> training_;
};

}  // namespace nn
}  // namespace dg
