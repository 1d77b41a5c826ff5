// A small expression, its gradients, and its graph.
#include <deltagraph/deltagraph.h>
#include <fmt/core.h>

int main() {
  dg::Param w(dg::Tensor::randn({3, 4}, 1), "w");
  dg::Param b(dg::Tensor::zeros({3}), "b");
  dg::Tape tape;
  dg::Var x = dg::input(dg::Tensor::randn({2, 4}, 2), "x");
  dg::Var y = dg::mean(dg::tanh(dg::linear(x, w, b)));
  auto grads = dg::grad(y, {w, b});
  fmt::print("loss = {}\ndL/dw = {}\ndL/db = {}\n", y.value(), grads[0].value(), grads[1].value());
}
