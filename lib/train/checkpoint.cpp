// Model checkpoints: parameters, optimiser state and training progress in one safetensors file.
#include "deltagraph/train/checkpoint.h"

#include <algorithm>
#include <charconv>

namespace dg {

namespace {

constexpr const char* kOptimizerPrefix = "optimizer/";

// ---- checkpoint metadata ----------------------------------------------------------------------

int64_t parse_int(const std::string& path, const Metadata& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return 0;
  int64_t value = 0;
  const std::string& text = it->second;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 0)
    fail("{}: metadata \"{}\" must be a non-negative integer, got \"{}\"", path, key, text);
  return value;
}

}  // namespace

// ---- checkpoints --------------------------------------------------------------------------------

void save_checkpoint(const std::string& path, const ParamList& params, const Optimizer* optimizer,
                     const TrainingState& state) {
  TensorMap tensors;
  for (const auto& [name, p] : params) {
    if (name.starts_with(kOptimizerPrefix))
      fail(
          "save_checkpoint: {}: parameter name '{}' starts with \"{}\", which is reserved for "
          "optimiser state",
          path, name, kOptimizerPrefix);
    tensors[name] = p.value();
  }
  for (const auto& [name, value] : params.buffers()) tensors[name] = value;
  Metadata metadata;
  for (const auto& [key, value] : state.metadata) {
    if (key.starts_with("deltagraph."))
      fail(
          "save_checkpoint: {}: metadata key \"{}\" is reserved (keys starting with "
          "\"deltagraph.\" are written by deltagraph)",
          path, key);
    metadata[key] = value;
  }
  if (state.epoch < 0 || state.step < 0)
    fail("save_checkpoint: {}: epoch ({}) and step ({}) must be >= 0", path, state.epoch,
         state.step);
  metadata["format"] = "pt";  // what safetensors.torch writes; PyTorch tools look for it
  metadata["deltagraph.epoch"] = std::to_string(state.epoch);
  metadata["deltagraph.step"] = std::to_string(state.step);
  if (optimizer) {
    metadata["deltagraph.optimizer"] = optimizer->kind();
    metadata["deltagraph.lr"] = fmt::format("{}", optimizer->lr());  // shortest exact form
    for (auto& [name, t] : optimizer->state()) tensors[kOptimizerPrefix + name] = t;
  }
  save_safetensors(path, tensors, metadata);
}

TrainingState load_checkpoint(const std::string& path, ParamList& params, Optimizer* optimizer) {
  SafetensorsContents file = load_safetensors(path);

  // Check every parameter before changing any, and report every problem at once.
  std::vector<std::string> problems;
  TensorMap optimizer_state;
  for (const auto& [name, t] : file.tensors) {
    if (name.starts_with(kOptimizerPrefix)) {
      optimizer_state[name.substr(std::strlen(kOptimizerPrefix))] = t;
      continue;
    }
    if (!params.contains(name))
      problems.push_back(fmt::format("unexpected tensor '{}' {} {}", name,
                                     safetensors_dtype(t.dtype()), t.shape()));
  }
  auto check = [&](const std::string& name, const Tensor& p) {
    auto it = file.tensors.find(name);
    if (it == file.tensors.end()) {
      problems.push_back(
          fmt::format("missing '{}' {} {}", name, safetensors_dtype(p.dtype()), p.shape()));
    } else if (it->second.dtype() != p.dtype()) {
      problems.push_back(fmt::format("dtype mismatch for '{}': expected {} got {}", name,
                                     safetensors_dtype(p.dtype()),
                                     safetensors_dtype(it->second.dtype())));
    } else if (!(it->second.shape() == p.shape())) {
      problems.push_back(fmt::format("shape mismatch for '{}': expected {} got {}", name, p.shape(),
                                     it->second.shape()));
    }
  };
  for (const auto& [name, p] : params) check(name, p.value());
  for (const auto& [name, value] : params.buffers()) check(name, value);
  if (!problems.empty()) {
    std::string list;
    for (const std::string& p : problems) list += "\n  " + p;
    fail("load_checkpoint: {} does not match the model ({} problem{}):{}", path, problems.size(),
         problems.size() == 1 ? "" : "s", list);
  }

  TrainingState state;
  state.epoch = parse_int(path, file.metadata, "deltagraph.epoch");
  state.step = parse_int(path, file.metadata, "deltagraph.step");
  for (const auto& [key, value] : file.metadata)
    if (!key.starts_with("deltagraph.") && key != "format") state.metadata[key] = value;

  if (optimizer) {
    auto kind = file.metadata.find("deltagraph.optimizer");
    if (kind == file.metadata.end())
      fail(
          "load_checkpoint: {} holds no optimiser state (it was saved without an optimiser); "
          "pass no optimiser to load the weights alone",
          path);
    if (kind->second != optimizer->kind())
      fail("load_checkpoint: {} holds the state of a '{}' optimiser, not of '{}'", path,
           kind->second, optimizer->kind());
    double lr = 0;
    auto lr_text = file.metadata.find("deltagraph.lr");
    if (lr_text == file.metadata.end() ||
        std::from_chars(lr_text->second.data(), lr_text->second.data() + lr_text->second.size(), lr)
                .ec != std::errc())
      fail("load_checkpoint: {}: metadata \"deltagraph.lr\" is missing or not a number", path);
    try {
      optimizer->load_state(optimizer_state);  // validates all, then replaces
    } catch (const Error& e) {
      fail("load_checkpoint: {}: {}", path, e.what());
    }
    optimizer->set_lr(lr);
  }

  for (const auto& [name, p] : params) {
    Param param = p;
    const Tensor& saved = file.tensors.at(name);
    std::memcpy(param.mutable_value().raw(), saved.raw(), saved.nbytes());
  }
  for (const auto& [name, value] : params.buffers()) {
    Tensor buffer = value;  // a shared handle: the layers see the loaded values
    const Tensor& saved = file.tensors.at(name);
    std::memcpy(buffer.raw(), saved.raw(), saved.nbytes());
  }
  return state;
}

}  // namespace dg
