// Fine-tunes an ONNX classifier of Fashion-MNIST images in deltagraph and exports it again: the
// round trip import -> train -> export. The model must take raw pixels [N,1,28,28] in [0, 1] and
// give logits [N,10], as fashion_mnist's out/onnx/model.onnx does.
//
//   build/bin/onnx_finetune --model out/onnx/model.onnx [--epochs 1] [--batch-size 64]
//                           [--lr 0.0003] [--seed 1] [--threads 0] [--data DIR] [--out DIR]
//                           [--limit N] [--test-limit N]
//
// The ONNX initializers are the parameters (batch norm's statistics its buffers); the model
// trains in training mode (batch statistics, dropout) with Adam, then is measured in evaluation
// mode. Writes out/onnx (the fine-tuned model.onnx with a test folder of deltagraph's logits for
// 8 test images: `dg onnx-test`, tools/onnxruntime/run-test.js) and prints the test accuracy
// before and after: `test accuracy: 0.XXXX -> 0.XXXX`.
#include <deltagraph/deltagraph.h>

#include <fmt/core.h>

#include <algorithm>
#include <filesystem>

#include "flags.h"

namespace {

struct Flags : examples::TrainingFlags {
  std::string model;
  Flags() {
    lr = 3e-4;
    out = "out/onnx_finetune";
  }
};

constexpr const char* kUsage =
    "usage: onnx_finetune --model MODEL.onnx [--epochs N] [--batch-size N] [--lr X] [--seed N]\n"
    "                     [--threads N] [--data DIR] [--out DIR] [--limit N] [--test-limit N]\n";

Flags parse(int argc, char** argv) {
  Flags f;
  for (examples::FlagReader r(argc, argv); r.next();) {
    if (f.read(r)) continue;
    if (r.flag() == "--model") {
      f.model = r.value();
    } else if (r.flag() == "--help" || r.flag() == "-h") {
      fmt::print("{}", kUsage);
      std::exit(0);
    } else {
      dg::fail("unknown argument '{}' (try --help)", r.flag());
    }
  }
  if (f.model.empty()) dg::fail("--model MODEL.onnx is required\n{}", kUsage);
  f.check();
  return f;
}

double accuracy(const dg::OnnxModel& model, const dg::Dataset& data) {
  dg::NoGrad no_grad;
  int64_t correct = 0;
  for (int64_t start = 0; start < data.size(); start += 128) {
    const dg::Dataset part = data.slice(start, std::min<int64_t>(128, data.size() - start));
    const dg::Tensor logits = model({dg::input(part.images)})[0].value();
    const float* z = logits.data<float>();
    const int64_t* y = part.labels.data<int64_t>();
    for (int64_t n = 0; n < part.size(); ++n)
      correct += std::max_element(z + n * 10, z + n * 10 + 10) - (z + n * 10) == y[n];
  }
  return static_cast<double>(correct) / static_cast<double>(data.size());
}

}  // namespace

int main(int argc, char** argv) try {
  const Flags flags = parse(argc, argv);
  if (flags.threads > 0) dg::set_num_threads(flags.threads);
  dg::OnnxModel model = dg::load_onnx(flags.model);
  if (model.inputs.size() != 1 || model.outputs.size() != 1 || model.inputs[0].shape.size() != 4)
    dg::fail(
        "{}: expected one input [N,1,28,28] and one output [N,10], got {} inputs and {} "
        "outputs",
        flags.model, model.inputs.size(), model.outputs.size());
  fmt::print("{}: opset {}, {} ({} parameters, ops: {})\n", flags.model, model.opset,
             model.producer, model.params.count(), fmt::join(model.op_types(), " "));
  const dg::Dataset train = dg::load_mnist(flags.data, "train", flags.limit);
  const dg::Dataset test = dg::load_mnist(flags.data, "t10k", flags.test_limit);

  const double before = accuracy(model, test);
  fmt::print("test accuracy as imported: {:.4f}\n", before);
  dg::Adam optimizer(model.params, {.lr = flags.lr});
  for (int64_t epoch = 0; epoch < flags.epochs; ++epoch) {
    model.params.train();
    const dg::Batches batches(
        train,
        {.batch_size = flags.batch_size, .seed = flags.seed, .epoch = epoch, .drop_last = true});
    double loss_sum = 0;
    for (int64_t b = 0; b < batches.size(); ++b) {
      const dg::Batch batch = batches[b];
      dg::Tape tape;
      const dg::Var logits = model({dg::input(batch.images, "pixels")})[0];
      const dg::Var loss = dg::softmax_xent(logits, dg::input(batch.labels, "labels"));
      dg::backward(loss);
      optimizer.step();
      model.params.zero_grad();
      loss_sum += loss.item();
    }
    model.params.eval();
    fmt::print("epoch {}/{}: loss {:.4f}, test accuracy {:.4f}\n", epoch + 1, flags.epochs,
               loss_sum / static_cast<double>(std::max<int64_t>(1, batches.size())),
               accuracy(model, test));
  }
  model.params.eval();
  {
    dg::Tape tape;
    const dg::Var pixels = dg::variable(test.slice(0, 8).images, "pixels");
    dg::Var logits = model({pixels})[0];
    dg::export_onnx_test_folder({pixels}, {logits}, flags.out + "/onnx",
                                {.graph_name = "fashion_mnist_classifier_finetuned"});
  }
  fmt::print("fine-tuned model: {}/onnx/model.onnx\n", flags.out);
  fmt::print("test accuracy: {:.4f} -> {:.4f}\n", before, accuracy(model, test));
  return 0;
} catch (const dg::Error& e) {
  fmt::print(stderr, "onnx_finetune: {}\n", e.what());
  return 1;
}
