// The dropout family: inverted dropout with a mask that is a pure function of (seed, position).
//
//   keep_i = u(seed, i) >= p,   y_i = keep_i * x_i / (1 - p)   (training; p = 1 gives zeros)
//   y = x                                                      (not training, or p = 0)
// u(seed, i) is a uniform number in [0, 1) from a counter-based hash (SplitMix64's finaliser of
// the seed's hash xor the flat index i), so the mask needs no state: the same seed gives the same
// mask on any machine and any number of threads, and the VJP rebuilds it instead of storing it.
// Since y is x times a fixed diagonal, the VJP is dropout itself: dx = dropout(g, p, seed).
#include <cstdint>

#include "kernels/parallel_for.h"
#include "op_util.h"

namespace dg {

namespace {

uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// u(seed, i) in [0, 1), 53 random bits.
double dropout_uniform(uint64_t seed_hash, uint64_t i) {
  return static_cast<double>(splitmix64(seed_hash ^ i) >> 11) * 0x1.0p-53;
}

std::vector<TensorSpec> dropout_shape(const OpCall& c) {
  const double p = c.attrs.real("p");
  if (!(p >= 0 && p <= 1)) shape_fail(c, "p must be a probability in [0, 1], got {}", p);
  return same_as_input(c);
}

std::vector<Tensor> dropout_kernel(const OpCall& c, std::span<const TensorSpec> specs) {
  const Tensor& x = c.input(0);
  const double p = c.attrs.real("p");
  if (!c.attrs.boolean("training") || p == 0) return std::vector<Tensor>{x};
  Tensor y(specs[0].shape, specs[0].dtype);
  const uint64_t seed_hash = splitmix64(static_cast<uint64_t>(c.attrs.integer("seed")));
  dispatch_float(y.dtype(), [&](auto t) {
    using T = decltype(t);
    const T scale = p < 1 ? static_cast<T>(1 / (1 - p)) : T(0);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    kernels::parallel_for(x.numel(), 8, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        py[i] = dropout_uniform(seed_hash, static_cast<uint64_t>(i)) >= p ? px[i] * scale : T(0);
    });
  });
  return std::vector<Tensor>{y};
}

std::vector<Var> dropout_vjp(const VjpContext& c) {
  return {dropout(c.grad_output(0), {.p = c.attrs.real("p"),
                                     .training = c.attrs.boolean("training"),
                                     .seed = c.attrs.integer("seed")})};
}

OpSample dropout_sample(Sampler& s) {
  return OpSample{{s.smooth(sample_shape(s, 1, 4))},
                  {{"p", s.choose({0.5, 0.0, 0.25, 0.9, 1.0})},
                   {"training", s.integer(0, 3) != 0},
                   {"seed", s.integer(0, 1000)}}};
}

OpDef dropout_def() {
  return {
      .name = "dropout",
      .summary =
          "inverted dropout: zeroes each value with probability p and scales the kept "
          "ones by 1/(1-p); the mask is a function of (seed, position)",
      .inputs = {{"x"}},
      .attrs = {{"p", AttrType::real, AttrValue(0.5), "probability of zeroing a value"},
                {"training", AttrType::boolean, AttrValue(true), "false: the identity (evaluation)",
                 "train"},
                {"seed", AttrType::integer, AttrValue(0),
                 "decides the mask; draw a new one per step (nn::Dropout does)"}},
      .shape = dropout_shape,
      .forward = dropout_kernel,
      .vjp = dropout_vjp,
      .vjp_formula = "dx = dropout(g, p, training, seed) (the same mask and scale)",
      .vjp_reads_outputs = false,
      .label = [](const Attrs& a,
                  std::span<const Shape>) { return fmt::format("dropout p{}", a.real("p")); },
      .sample = dropout_sample,
  };
}

}  // namespace

void register_dropout_ops() { register_builtin(dropout_def()); }

Var dropout(const Var& x, DropoutOptions o, Loc loc) {
  static const OpDef& op = builtin("dropout");
  return call_op(op, {x}, Attrs(op, {{"p", o.p}, {"training", o.training}, {"seed", o.seed}}), loc);
}

}  // namespace dg
