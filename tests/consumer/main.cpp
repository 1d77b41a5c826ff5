// Differentiates a small expression through the installed library; exits 0 if the gradient of
// sum(x * x) is 2x. It also touches the training pieces that link zlib (IDX reader) and libpng
// (image grids), so the installed package must bring those dependencies along.
#include <deltagraph/deltagraph.h>

#include <cmath>
#include <cstdio>

int main() {
  dg::Param x(dg::Tensor::from(std::vector<double>{1.5, -2.0}, {2}));
  dg::Tape tape;
  auto g = dg::grad(dg::sum(x * x), {x});
  bool training_pieces = false;
  try {
    dg::read_idx("/nonexistent/train-images-idx3-ubyte.gz");
  } catch (const dg::Error&) {
    training_pieces = dg::image_grid(dg::Tensor::zeros({1, 1, 2, 2})).numel() > 0;
  }
  std::printf("consumer: training pieces %s\n", training_pieces ? "linked" : "BROKEN");
  if (!training_pieces) return 1;
  const bool ok =
      std::abs(g[0].value().at(0) - 3.0) < 1e-12 && std::abs(g[0].value().at(1) + 4.0) < 1e-12;
  std::printf("consumer: gradient %s\n", ok ? "correct" : "WRONG");
  return ok ? 0 : 1;
}
