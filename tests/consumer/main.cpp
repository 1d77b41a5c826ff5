// Differentiates a small expression through the installed library; exits 0 if the gradient of
// sum(x * x) is 2x.
#include <deltagraph/deltagraph.h>

#include <cmath>
#include <cstdio>

int main() {
  dg::Param x(dg::Tensor::from(std::vector<double>{1.5, -2.0}, {2}));
  dg::Tape tape;
  auto g = dg::grad(dg::sum(x * x), {x});
  const bool ok = std::abs(g[0].value().at(0) - 3.0) < 1e-12 && std::abs(g[0].value().at(1) + 4.0) < 1e-12;
  std::printf("consumer: gradient %s\n", ok ? "correct" : "WRONG");
  return ok ? 0 : 1;
}
