// Parameter initialisation: fans, gains, Kaiming and Xavier (on top of Tensor's seeded
// uniform/randn).
#include "deltagraph/train/init.h"

#include <cmath>

namespace dg {

Fans compute_fans(const Shape& shape, WeightLayout layout) {
  if (shape.size() < 2)
    fail("compute_fans: a weight needs at least 2 axes ([out, in, ...]) to have fans, got shape {}",
         shape);
  for (int64_t d : shape)
    if (d <= 0)
      fail("compute_fans: shape {} has an axis of size {}; every axis must be >= 1", shape, d);
  int64_t receptive_field = 1;
  for (int i = 2; i < shape.size(); ++i) receptive_field *= shape[i];
  const int64_t first = shape[0] * receptive_field, second = shape[1] * receptive_field;
  return layout == WeightLayout::out_in ? Fans{second, first} : Fans{first, second};
}

double gain(Nonlinearity nonlinearity, double negative_slope) {
  switch (nonlinearity) {
    case Nonlinearity::linear:
    case Nonlinearity::sigmoid:
      return 1.0;
    case Nonlinearity::relu:
      return std::sqrt(2.0);
    case Nonlinearity::leaky_relu:
      return std::sqrt(2.0 / (1.0 + negative_slope * negative_slope));
    case Nonlinearity::tanh:
      return 5.0 / 3.0;
  }
  fail("gain: unknown nonlinearity {}", static_cast<int>(nonlinearity));
}

namespace {

void check_float(DType dtype, const char* who) {
  if (!is_floating(dtype)) fail("{}: parameters are float32 or float64; int64 was requested", who);
}

double kaiming_std(const Shape& shape, const KaimingOptions& o) {
  const Fans fans = compute_fans(shape, o.layout);
  const int64_t fan = o.mode == FanMode::fan_in ? fans.fan_in : fans.fan_out;
  return gain(o.nonlinearity, o.negative_slope) / std::sqrt(static_cast<double>(fan));
}

double xavier_std(const Shape& shape, const XavierOptions& o) {
  const Fans fans = compute_fans(shape, o.layout);
  return o.gain * std::sqrt(2.0 / static_cast<double>(fans.fan_in + fans.fan_out));
}

}  // namespace

// A uniform distribution on [-b, b] has std b / sqrt(3), hence the sqrt(3) factors below.
Tensor kaiming_uniform(const Shape& shape, uint64_t seed, KaimingOptions options) {
  check_float(options.dtype, "kaiming_uniform");
  const double bound = std::sqrt(3.0) * kaiming_std(shape, options);
  return Tensor::uniform(shape, seed, options.dtype, -bound, bound);
}

Tensor kaiming_normal(const Shape& shape, uint64_t seed, KaimingOptions options) {
  check_float(options.dtype, "kaiming_normal");
  return Tensor::randn(shape, seed, options.dtype, 0.0, kaiming_std(shape, options));
}

Tensor xavier_uniform(const Shape& shape, uint64_t seed, XavierOptions options) {
  check_float(options.dtype, "xavier_uniform");
  const double bound = std::sqrt(3.0) * xavier_std(shape, options);
  return Tensor::uniform(shape, seed, options.dtype, -bound, bound);
}

Tensor xavier_normal(const Shape& shape, uint64_t seed, XavierOptions options) {
  check_float(options.dtype, "xavier_normal");
  return Tensor::randn(shape, seed, options.dtype, 0.0, xavier_std(shape, options));
}

Tensor uniform_fan_in(const Shape& shape, int64_t fan_in, uint64_t seed, DType dtype) {
  check_float(dtype, "uniform_fan_in");
  if (fan_in <= 0) fail("uniform_fan_in: fan_in must be at least 1, got {}", fan_in);
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return Tensor::uniform(shape, seed, dtype, -bound, bound);
}

}  // namespace dg
