// The layer helpers (user-facing layer, on top of the typed op functions of ops.h): each one
// creates its named parameters in a ParamList and calls its op with the stored options.
#include "deltagraph/train/nn.h"

namespace dg::nn {

namespace {

void check_positive(const std::string& layer, const char* what, int64_t value) {
  if (value < 1) fail("{}: {} must be at least 1, got {}", layer, what, value);
}

// The weight's initial value for `init`. `pytorch_fan_in` is the fan PyTorch's own default
// uses; `layout` is how Kaiming/Xavier should read the weight's axes.
Tensor initial_weight(const ParamList& params, const std::string& name, const Shape& shape,
                      Init init, DType dtype, int64_t pytorch_fan_in, WeightLayout layout) {
  const uint64_t seed = params.seed_for(name);
  switch (init) {
    case Init::pytorch_default:
      return uniform_fan_in(shape, pytorch_fan_in, seed, dtype);
    case Init::kaiming_uniform:
      return kaiming_uniform(shape, seed, {.layout = layout, .dtype = dtype});
    case Init::kaiming_normal:
      return kaiming_normal(shape, seed, {.layout = layout, .dtype = dtype});
    case Init::xavier_uniform:
      return xavier_uniform(shape, seed, {.layout = layout, .dtype = dtype});
    case Init::xavier_normal:
      return xavier_normal(shape, seed, {.layout = layout, .dtype = dtype});
  }
  fail("{}: unknown Init value {}", name, static_cast<int>(init));
}

Param make_bias(ParamList& params, const std::string& layer, int64_t channels, Init init,
                DType dtype, int64_t pytorch_fan_in) {
  const std::string name = layer + ".bias";
  Tensor value = init == Init::pytorch_default
                     ? uniform_fan_in({channels}, pytorch_fan_in, params.seed_for(name), dtype)
                     : Tensor::zeros({channels}, dtype);
  return params.add(name, std::move(value));
}

// Every layer needs a name of its own: its parameters are "<name>.weight" and "<name>.bias".
void check_layer(const std::string& layer, const std::string& name, DType dtype) {
  if (name.empty())
    fail("{}: a layer needs a non-empty name (its parameters are <name>.weight, <name>.bias)",
         layer);
  if (!is_floating(dtype)) fail("{}: layer weights are float32 or float64, not int64", layer);
}

}  // namespace

Conv2d::Conv2d(ParamList& params, const std::string& name, int64_t in_channels,
               int64_t out_channels, Pair kernel_size, Conv2dLayerOptions o)
    : options{
          .stride = o.stride, .padding = o.padding, .dilation = o.dilation, .groups = o.groups} {
  const std::string who = "Conv2d '" + name + "'";
  check_layer(who, name, o.dtype);
  check_positive(who, "in_channels", in_channels);
  check_positive(who, "out_channels", out_channels);
  check_positive(who, "kernel height", kernel_size.h);
  check_positive(who, "kernel width", kernel_size.w);
  check_positive(who, "groups", o.groups);
  if (in_channels % o.groups || out_channels % o.groups)
    fail("{}: in_channels ({}) and out_channels ({}) must both be divisible by groups ({})", who,
         in_channels, out_channels, o.groups);
  const Shape shape{out_channels, in_channels / o.groups, kernel_size.h, kernel_size.w};
  const int64_t fan_in = compute_fans(shape).fan_in;
  weight = params.add(name + ".weight", initial_weight(params, name + ".weight", shape, o.init,
                                                       o.dtype, fan_in, WeightLayout::out_in));
  if (o.bias) bias = make_bias(params, name, out_channels, o.init, o.dtype, fan_in);
}

Var Conv2d::operator()(const Var& x, Loc loc) const {
  return bias.defined() ? conv2d(x, weight, bias, options, loc) : conv2d(x, weight, options, loc);
}

ConvTranspose2d::ConvTranspose2d(ParamList& params, const std::string& name, int64_t in_channels,
                                 int64_t out_channels, Pair kernel_size,
                                 ConvTranspose2dLayerOptions o)
    : options{.stride = o.stride,
              .padding = o.padding,
              .output_padding = o.output_padding,
              .dilation = o.dilation,
              .groups = o.groups} {
  const std::string who = "ConvTranspose2d '" + name + "'";
  check_layer(who, name, o.dtype);
  check_positive(who, "in_channels", in_channels);
  check_positive(who, "out_channels", out_channels);
  check_positive(who, "kernel height", kernel_size.h);
  check_positive(who, "kernel width", kernel_size.w);
  check_positive(who, "groups", o.groups);
  if (in_channels % o.groups || out_channels % o.groups)
    fail("{}: in_channels ({}) and out_channels ({}) must both be divisible by groups ({})", who,
         in_channels, out_channels, o.groups);
  const Shape shape{in_channels, out_channels / o.groups, kernel_size.h, kernel_size.w};
  // PyTorch's default counts fans as if the weight were [out, in, ...] (shape[1] * kH * kW).
  const int64_t pytorch_fan_in = compute_fans(shape, WeightLayout::out_in).fan_in;
  weight =
      params.add(name + ".weight", initial_weight(params, name + ".weight", shape, o.init, o.dtype,
                                                  pytorch_fan_in, WeightLayout::in_out));
  if (o.bias) bias = make_bias(params, name, out_channels, o.init, o.dtype, pytorch_fan_in);
}

Var ConvTranspose2d::operator()(const Var& x, Loc loc) const {
  return bias.defined() ? conv_transpose2d(x, weight, bias, options, loc)
                        : conv_transpose2d(x, weight, options, loc);
}

Linear::Linear(ParamList& params, const std::string& name, int64_t in_features,
               int64_t out_features, LinearLayerOptions o) {
  const std::string who = "Linear '" + name + "'";
  check_layer(who, name, o.dtype);
  check_positive(who, "in_features", in_features);
  check_positive(who, "out_features", out_features);
  const Shape shape{out_features, in_features};
  weight = params.add(name + ".weight", initial_weight(params, name + ".weight", shape, o.init,
                                                       o.dtype, in_features, WeightLayout::out_in));
  if (o.bias) bias = make_bias(params, name, out_features, o.init, o.dtype, in_features);
}

Var Linear::operator()(const Var& x, Loc loc) const {
  return bias.defined() ? linear(x, weight, bias, loc) : linear(x, weight, loc);
}

Conv1x1::Conv1x1(ParamList& params, const std::string& name, int64_t in_channels,
                 int64_t out_channels, LinearLayerOptions o) {
  const std::string who = "Conv1x1 '" + name + "'";
  check_layer(who, name, o.dtype);
  check_positive(who, "in_channels", in_channels);
  check_positive(who, "out_channels", out_channels);
  const Shape shape{out_channels, in_channels, 1, 1};
  weight = params.add(name + ".weight", initial_weight(params, name + ".weight", shape, o.init,
                                                       o.dtype, in_channels, WeightLayout::out_in));
  if (o.bias) bias = make_bias(params, name, out_channels, o.init, o.dtype, in_channels);
}

Var Conv1x1::operator()(const Var& x, Loc loc) const {
  return bias.defined() ? conv1x1(x, weight, bias, loc) : conv1x1(x, weight, loc);
}

BatchNorm2d::BatchNorm2d(ParamList& params, const std::string& name, int64_t channels,
                         BatchNorm2dLayerOptions o)
    : options(o), training_(params.mode()) {
  const char* who = "nn::BatchNorm2d";
  check_layer(who, name, o.dtype);
  check_positive(who, "channels", channels);
  weight = params.add(name + ".weight", Tensor::ones({channels}, o.dtype));
  bias = params.add(name + ".bias", Tensor::zeros({channels}, o.dtype));
  running_mean = params.add_buffer(name + ".running_mean", Tensor::zeros({channels}, o.dtype));
  running_var = params.add_buffer(name + ".running_var", Tensor::ones({channels}, o.dtype));
  running_mean_name = name + ".running_mean";
  running_var_name = name + ".running_var";
  num_batches_tracked =
      params.add_buffer(name + ".num_batches_tracked", Tensor::zeros({}, DType::i64));
}

Var BatchNorm2d::operator()(const Var& x, Loc loc) const {
  const bool training = *training_;
  Var y =
      // Named like the buffers, so graphs and ONNX exports show (and keep) their names.
      batch_norm2d(x, weight, bias, constant(running_mean, running_mean_name),
                   constant(running_var, running_var_name),
                   {.training = training, .momentum = options.momentum, .eps = options.eps}, loc);
  if (training) {
    Tensor count = num_batches_tracked;  // a shared handle: this updates the buffer
    count.data<int64_t>()[0] += 1;
  }
  return y;
}

Dropout::Dropout(ParamList& params, const std::string& name, double p_)
    : p(p_), seed_(params.seed_for(name)), training_(params.mode()) {
  if (name.empty()) fail("nn::Dropout: a layer needs a non-empty name");
  if (!(p >= 0 && p <= 1))
    fail("nn::Dropout '{}': p must be a probability in [0, 1], got {}", name, p);
}

Var Dropout::operator()(const Var& x, Loc loc) const {
  if (!*training_) return dropout(x, {.p = p, .training = false}, loc);
  // A new mask per call, reproducible from the ParamList's seed.
  const auto seed = static_cast<int64_t>((seed_ + 0x9e3779b97f4a7c15ULL * ++calls_) >> 1);
  return dropout(x, {.p = p, .training = true, .seed = seed}, loc);
}

}  // namespace dg::nn
