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

// The parameters of a model, in registration order, each under a unique name
// ("conv1.weight"). Params are shared handles: the list, the layers and the optimiser all see
// the same weights.
class ParamList {
 public:
  // `seed` decides every initial value the layer helpers draw (see seed_for).
  explicit ParamList(uint64_t seed = 0) : seed_(seed) {}

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

  bool contains(std::string_view name) const { return index_of(name) >= 0; }
  // The parameter called `name`; throws dg::Error listing the known names if there is none.
  Param at(std::string_view name) const;
  // Position of `name` in the list, or -1.
  int64_t index_of(std::string_view name) const;

  // Total number of scalars over all parameters.
  int64_t count() const;
  // The Params alone, in order.
  std::vector<Param> params() const;
  // Resets every parameter's accumulated gradient.
  void zero_grad();
  // A table: one line per parameter with its name, shape, dtype and count, then the total.
  std::string summary() const;

 private:
  uint64_t seed_;
  std::vector<NamedParam> entries_;
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
  Pair padding = 0;
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
  Pair padding = 0;
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

}  // namespace nn
}  // namespace dg
