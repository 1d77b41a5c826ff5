// The PyTorch side of this check is state_dict_roundtrip.py, which runs this program twice:
//
//   state_dict_roundtrip save DIR   the examples' Classifier (batch norm, dropout) with running
//                                   statistics moved by a few training-mode passes, saved as a
//                                   checkpoint (DIR/dg_model.safetensors), and test images with
//                                   its evaluation-mode logits (DIR/dg_io.safetensors)
//   state_dict_roundtrip check DIR  loads a state_dict PyTorch saved (DIR/torch_model.safetensors)
//                                   into the same model and compares its logits with PyTorch's
//                                   (DIR/torch_io.safetensors); exit status 1 beyond 1e-5
#include <deltagraph/deltagraph.h>

#include <fmt/core.h>

#include <cmath>
#include <string>

#include "classifier.h"

namespace {

double max_abs_difference(const dg::Tensor& a, const dg::Tensor& b) {
  if (!(a.shape() == b.shape()))
    dg::fail("logits are {} but the reference's are {}", a.shape(), b.shape());
  double most = 0;
  for (int64_t i = 0; i < a.numel(); ++i) most = std::max(most, std::abs(a.at(i) - b.at(i)));
  return most;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 3) {
    fmt::print(stderr, "usage: state_dict_roundtrip save|check DIR\n");
    return 2;
  }
  const std::string mode = argv[1], dir = argv[2];
  if (mode == "save") {
    examples::Classifier model(7);
    const dg::Tensor images = dg::Tensor::randn({6, 1, 28, 28}, 11);
    {
      dg::NoGrad no_grad;  // training-mode passes only to move the running statistics
      for (uint64_t step = 0; step < 3; ++step)
        (void)model(dg::input(dg::Tensor::randn({8, 1, 28, 28}, 100 + step, dg::DType::f32, 0.5)));
    }
    model.params.eval();
    const dg::Tensor logits = model(dg::input(images)).value();
    dg::save_checkpoint(dir + "/dg_model.safetensors", model.params);
    dg::save_safetensors(dir + "/dg_io.safetensors", {{"images", images}, {"logits", logits}});
    fmt::print("saved the model and its logits to {}\n", dir);
    return 0;
  }
  if (mode == "check") {
    examples::Classifier model(99);
    dg::load_checkpoint(dir + "/torch_model.safetensors", model.params);
    model.params.eval();
    const dg::SafetensorsContents io = dg::load_safetensors(dir + "/torch_io.safetensors");
    const dg::Tensor logits = model(dg::input(io.tensors.at("images"))).value();
    const double difference = max_abs_difference(logits, io.tensors.at("logits"));
    fmt::print("PyTorch's state_dict in deltagraph: logits differ by at most {:.3g}\n", difference);
    return difference <= 1e-5 ? 0 : 1;
  }
  fmt::print(stderr, "unknown mode '{}' (save or check)\n", mode);
  return 2;
} catch (const dg::Error& e) {
  fmt::print(stderr, "state_dict_roundtrip: {}\n", e.what());
  return 1;
}
