// The demo: a small encoder/decoder written as one expression with the mission's ops
// (conv2d, bias_add, relu, max_pool2d with indices, max_unpool2d, conv_transpose2d, conv1x1,
// softmax_xent), its gradients, and its graph.
//
//   build/bin/demo [out.dot]
#include <deltagraph/deltagraph.h>
#include <fmt/core.h>

int main(int argc, char** argv) {
  const std::string dot_path = argc > 1 ? argv[1] : "demo.dot";
  // Weights as PyTorch lays them out: conv2d [O, C, kH, kW], conv_transpose2d [C, O, kH, kW].
  dg::Param w1(dg::Tensor::randn({4, 1, 3, 3}, 1, dg::DType::f32, 0, 0.5), "enc.weight");
  dg::Param b1(dg::Tensor::zeros({4}), "enc.bias");
  dg::Param w2(dg::Tensor::randn({4, 3, 3, 3}, 2, dg::DType::f32, 0, 0.5), "dec.weight");
  dg::Param w3(dg::Tensor::randn({2, 3, 1, 1}, 3, dg::DType::f32, 0, 0.5), "classify.weight");

  dg::Tape tape;
  dg::Var image = dg::input(dg::Tensor::randn({2, 1, 6, 6}, 4), "image");
  dg::Var labels = dg::input(dg::Tensor::from(std::vector<int64_t>(72, 1), {2, 6, 6}), "labels");

  dg::Var h = dg::relu(dg::bias_add(dg::conv2d(image, w1, {.padding = 1}), b1));
  auto [pooled, where] = dg::max_pool2d(h, {.kernel_size = 2});           // values + int64 indices
  dg::Var up = dg::max_unpool2d(pooled, where, {.kernel_size = 2, .output_size = {6, 6}});
  dg::Var decoded = dg::conv_transpose2d(up, w2, {.padding = 1});         // [2,3,6,6]
  dg::Var logits = dg::conv1x1(decoded, w3);                              // [2,2,6,6] per-pixel classes
  dg::Var loss = dg::softmax_xent(logits, labels).named("loss");

  auto grads = dg::grad(loss, {w1, b1, w2, w3}, {.retain_graph = true});
  fmt::print("loss = {:.6f}\n", loss.item());
  const char* names[] = {"enc.weight", "enc.bias", "dec.weight", "classify.weight"};
  for (size_t i = 0; i < grads.size(); ++i) fmt::print("d loss / d {} = {}\n", names[i], grads[i].value());
  dg::write_dot({loss}, dot_path, {.title = "deltagraph demo"});
  fmt::print("graph written to {} (render: dot -Tsvg {} -o demo.svg)\n", dot_path, dot_path);
}
