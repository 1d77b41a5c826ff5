// The demo: a small encoder/decoder written as one expression with the mission's ops
// (conv2d, bias_add, relu, max_pool2d with indices, max_unpool2d, conv_transpose2d, conv1x1,
// softmax_xent), its gradients, and its graph: DOT text, an SVG of the model and an SVG of the
// model with its recorded backward pass beside it.
//
//   build/bin/demo [out.dot]     writes out.dot, out.svg and out_backward.svg
#include <deltagraph/deltagraph.h>
#include <fmt/core.h>

#include <string>

int main(int argc, char** argv) {
  const std::string dot_path = argc > 1 ? argv[1] : "demo.dot";
  const std::string stem = dot_path.size() > 4 && dot_path.ends_with(".dot")
                               ? dot_path.substr(0, dot_path.size() - 4)
                               : dot_path;
  const std::string svg_path = stem + ".svg", backward_svg_path = stem + "_backward.svg";

  // Weights as PyTorch lays them out: conv2d [O, C, kH, kW], conv_transpose2d [C, O, kH, kW].
  dg::Param w1(dg::Tensor::randn({4, 1, 3, 3}, 1, dg::DType::f32, 0, 0.5), "enc.weight");
  dg::Param b1(dg::Tensor::zeros({4}), "enc.bias");
  dg::Param w2(dg::Tensor::randn({4, 3, 3, 3}, 2, dg::DType::f32, 0, 0.5), "dec.weight");
  dg::Param w3(dg::Tensor::randn({2, 3, 1, 1}, 3, dg::DType::f32, 0, 0.5), "classify.weight");

  dg::Tape tape;
  dg::Var image = dg::input(dg::Tensor::randn({2, 1, 6, 6}, 4), "image");
  dg::Var labels = dg::input(dg::Tensor::from(std::vector<int64_t>(72, 1), {2, 6, 6}), "labels");

  // Scopes name parts of the model; the graph draws each as a cluster.
  dg::Var pooled, where, logits;
  {
    dg::Scope encoder("encoder");
    dg::Var h = dg::relu(dg::bias_add(dg::conv2d(image, w1, {.padding = 1}), b1));
    auto pool = dg::max_pool2d(h, {.kernel_size = 2});  // values + int64 indices
    pooled = pool.values;
    where = pool.indices;
  }
  {
    dg::Scope decoder("decoder");
    dg::Var up = dg::max_unpool2d(pooled, where, {.kernel_size = 2, .output_size = {6, 6}});
    dg::Var decoded = dg::conv_transpose2d(up, w2, {.padding = 1});  // [2,3,6,6]
    dg::Scope head("head");
    logits = dg::conv1x1(decoded, w3);  // [2,2,6,6] per-pixel classes
  }
  dg::Var loss = dg::softmax_xent(logits, labels).named("loss");

  // create_graph records the backward pass too, so it can be drawn (and differentiated again).
  std::vector<dg::Var> params{w1, b1, w2, w3};
  auto grads = dg::grad(loss, params, {.create_graph = true});
  fmt::print("loss = {:.6f}\n", loss.item());
  for (size_t i = 0; i < grads.size(); ++i) {
    grads[i].named("d loss / d " + params[i].name());
    fmt::print("{} = {}\n", grads[i].name(), grads[i].value());
  }

  dg::write_dot({loss}, dot_path, {.title = "deltagraph demo"});
  dg::render({loss}, svg_path, {.title = "deltagraph demo"});
  std::vector<dg::Var> with_gradients{loss};
  with_gradients.insert(with_gradients.end(), grads.begin(), grads.end());
  dg::render(
      with_gradients, backward_svg_path,
      {.title = "deltagraph demo: forward and backward", .backward = dg::BackwardGraph::beside});
  fmt::print("graph written to {}, rendered to {} and (with its backward pass) {}\n", dot_path,
             svg_path, backward_svg_path);
}
