// deltagraph: parameter initialisation (Kaiming/He and Xavier/Glorot), seeded.
//
//   dg::Param w(dg::kaiming_normal({32, 1, 5, 5}, /*seed=*/1), "conv1.weight");
//   dg::Param v(dg::xavier_uniform({10, 128}, /*seed=*/2), "fc.weight");
//
// Fans follow PyTorch's weight layouts: for conv2d [O, C/groups, kH, kW], conv1x1 [O, C, 1, 1]
// and linear [out, in], fan_in = shape[1] * kH * kW and fan_out = shape[0] * kH * kW
// (torch.nn.init._calculate_fan_in_and_fan_out). conv_transpose2d stores its weight the other
// way round, [C, O/groups, kH, kW]; pass WeightLayout::in_out to count fans for what the layer
// really does (fan_in = shape[0] * kH * kW). The same seed gives the same values on every run.
#pragma once

#include <cstdint>

#include "deltagraph/core/tensor.h"

namespace dg {

// How a weight's first two axes map to the layer's outputs and inputs.
enum class WeightLayout : uint8_t {
  out_in,  // [out, in, ...]: conv2d, conv1x1, linear (PyTorch's convention for fans)
  in_out,  // [in, out, ...]: conv_transpose2d
};

struct Fans {
  int64_t fan_in = 0;
  int64_t fan_out = 0;
};
// The fans of a weight of `shape` (at least 2 axes; the axes after the first two are the
// receptive field). Throws dg::Error for a shape with fewer than 2 axes or a zero axis.
Fans compute_fans(const Shape& shape, WeightLayout layout = WeightLayout::out_in);

// The activation that follows the layer; it sets the gain that keeps the variance of
// activations constant from layer to layer (torch.nn.init.calculate_gain).
enum class Nonlinearity : uint8_t { linear, relu, leaky_relu, tanh, sigmoid };
// linear/sigmoid: 1, relu: sqrt(2), leaky_relu: sqrt(2 / (1 + negative_slope^2)), tanh: 5/3.
double gain(Nonlinearity nonlinearity, double negative_slope = 0.01);

// Which fan Kaiming scales by: fan_in preserves the forward activations' variance, fan_out the
// backward gradients'.
enum class FanMode : uint8_t { fan_in, fan_out };

struct KaimingOptions {
  FanMode mode = FanMode::fan_in;
  Nonlinearity nonlinearity = Nonlinearity::relu;
  double negative_slope = 0.01;  // used with Nonlinearity::leaky_relu only
  WeightLayout layout = WeightLayout::out_in;
  DType dtype = DType::f32;
};
// Kaiming/He: std = gain / sqrt(fan). Uniform on [-b, b] with b = gain * sqrt(3 / fan).
Tensor kaiming_uniform(const Shape& shape, uint64_t seed, KaimingOptions options = {});
// Kaiming/He: normal with mean 0 and std = gain / sqrt(fan).
Tensor kaiming_normal(const Shape& shape, uint64_t seed, KaimingOptions options = {});

struct XavierOptions {
  double gain = 1.0;  // e.g. dg::gain(Nonlinearity::tanh)
  WeightLayout layout = WeightLayout::out_in;
  DType dtype = DType::f32;
};
// Xavier/Glorot: uniform on [-b, b] with b = gain * sqrt(6 / (fan_in + fan_out)).
Tensor xavier_uniform(const Shape& shape, uint64_t seed, XavierOptions options = {});
// Xavier/Glorot: normal with mean 0 and std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_normal(const Shape& shape, uint64_t seed, XavierOptions options = {});

// PyTorch's default for nn.Conv2d/nn.Linear weights and biases: uniform on
// [-1/sqrt(fan_in), 1/sqrt(fan_in)] (kaiming_uniform with a = sqrt(5) for the weight).
// `fan_in` is the fan_in of the layer's weight.
Tensor uniform_fan_in(const Shape& shape, int64_t fan_in, uint64_t seed, DType dtype = DType::f32);

}  // namespace dg
