// libFuzzer target: the safetensors checkpoint loader, alone and against a model's parameters.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "deltagraph/train/checkpoint.h"
#include "deltagraph/train/nn.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/dg_fuzz_st_" + std::to_string(getpid()) + ".safetensors";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    dg::load_safetensors(path);
  } catch (const dg::Error&) {
  }
  try {
    dg::ParamList params(1);
    params.add("w", dg::Tensor::zeros({2, 3}));
    params.add("b", dg::Tensor::zeros({3}, dg::DType::f64));
    dg::load_checkpoint(path, params);
  } catch (const dg::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
