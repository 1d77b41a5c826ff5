// safetensors reading and writing, and model checkpoints on top of it.
#include "deltagraph/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "atomic_file.h"

namespace dg {

// safetensors stores little-endian data; tensors are written and read as raw memory.
static_assert(std::endian::native == std::endian::little,
              "checkpoint.cpp assumes a little-endian machine (safetensors data is little-endian)");

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// The safetensors reference implementation refuses larger headers; so do we, before reading.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kOptimizerPrefix = "optimizer/";

const char* safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::i64:
      return "I64";
  }
  return "?";
}

// The position of a dtype in the reference implementation's Dtype enum (F32 < F64 < I64).
int reference_rank(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 0;
    case DType::f64:
      return 1;
    case DType::i64:
      return 2;
  }
  return 0;
}

// ---- reading ------------------------------------------------------------------------------------

// A read-only file with positioned reads; errors name the file.
class InputFile {
 public:
  explicit InputFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail("{}: cannot open it: {}", path, std::strerror(errno));
    struct stat info {};
    if (::fstat(fd_, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd_);
      fail("{}: not a regular file", path);
    }
    size_ = static_cast<uint64_t>(info.st_size);
  }
  ~InputFile() { ::close(fd_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }

  void read_at(uint64_t offset, void* out, uint64_t n) const {
    auto* p = static_cast<char*>(out);
    while (n > 0) {
      const ssize_t got =
          ::pread(fd_, p, std::min<uint64_t>(n, 1u << 30), static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail("{}: read error at offset {}: {}", path_, offset, std::strerror(errno));
      if (got == 0)
        fail("{}: the file ended at offset {} while reading (was it truncated while being read?)",
             path_, offset);
      p += got;
      offset += static_cast<uint64_t>(got);
      n -= static_cast<uint64_t>(got);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // offsets in the data section
};

std::string shape_text(const json& shape) { return shape.dump(); }

// Parses one tensor entry of the header and checks its dtype, shape and byte count.
Entry parse_entry(const std::string& path, const std::string& name, const json& info) {
  auto bad = [&](const std::string& what) -> Error {
    return Error(fmt::format("{}: tensor '{}' in the header: {}", path, name, what));
  };
  if (!info.is_object()) throw bad(fmt::format("expected an object, got {}", info.dump()));
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!info.contains(field)) throw bad(fmt::format("the field \"{}\" is missing", field));
  const json& dtype = info["dtype"];
  const json& shape = info["shape"];
  const json& offsets = info["data_offsets"];
  if (!dtype.is_string()) throw bad(fmt::format("dtype must be a string, got {}", dtype.dump()));
  Entry e{name, DType::f32, {}, 0, 0};
  const std::string dtype_text = dtype.get<std::string>();
  if (dtype_text == "F32")
    e.dtype = DType::f32;
  else if (dtype_text == "F64")
    e.dtype = DType::f64;
  else if (dtype_text == "I64")
    e.dtype = DType::i64;
  else
    throw bad(fmt::format("dtype \"{}\" is not supported (deltagraph reads F32, F64 and I64)",
                          dtype_text));
  if (!shape.is_array()) throw bad(fmt::format("shape must be an array, got {}", shape.dump()));
  if (shape.size() > static_cast<size_t>(Dims::kMaxDims))
    throw bad(fmt::format("shape {} has {} axes; deltagraph tensors have at most {}",
                          shape_text(shape), shape.size(), Dims::kMaxDims));
  uint64_t bytes = dtype_size(e.dtype);
  for (const json& d : shape) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      throw bad(fmt::format("shape {} must hold non-negative integers", shape_text(shape)));
    const uint64_t size = d.get<uint64_t>();
    // A product that overflows cannot describe data in a real file.
    if (__builtin_mul_overflow(bytes, size, &bytes) || bytes > static_cast<uint64_t>(INT64_MAX))
      throw bad(fmt::format("shape {} of dtype {} describes more than 2^63 bytes",
                            shape_text(shape), dtype_text));
    e.shape.push_back(static_cast<int64_t>(size));
  }
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    throw bad(fmt::format("data_offsets must be [begin, end] with non-negative integers, got {}",
                          offsets.dump()));
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  if (e.end < e.begin)
    throw bad(fmt::format("data_offsets [{}, {}] end before they begin", e.begin, e.end));
  if (e.end - e.begin != bytes)
    throw bad(fmt::format("dtype {} and shape {} need {} bytes but data_offsets [{}, {}] span {}",
                          dtype_text, shape_text(shape), bytes, e.begin, e.end, e.end - e.begin));
  return e;
}

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

// ---- safetensors --------------------------------------------------------------------------------

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  // Laid out as the reference implementation lays out its files (so the bytes are the same as
  // Python's safetensors would write): tensors by descending dtype rank (I64, F64, F32), then by
  // name; "__metadata__" first in the header; fields in the order dtype, shape, data_offsets.
  std::vector<std::pair<std::string, Tensor>> ordered(tensors.begin(), tensors.end());
  std::stable_sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) {
    return reference_rank(a.second.dtype()) > reference_rank(b.second.dtype());
  });
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json m = ordered_json::object();
    for (const auto& [key, value] : metadata) m[key] = value;
    header[kMetadataKey] = std::move(m);
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : ordered) {
    if (name.empty()) fail("save_safetensors: {}: a tensor needs a non-empty name", path);
    if (name == kMetadataKey)
      fail("save_safetensors: {}: \"{}\" is reserved for metadata and cannot name a tensor", path,
           kMetadataKey);
    if (!t.defined()) fail("save_safetensors: {}: tensor '{}' is undefined", path, name);
    ordered_json info = ordered_json::object();
    info["dtype"] = safetensors_dtype(t.dtype());
    info["shape"] = std::vector<int64_t>(t.shape().begin(), t.shape().end());
    info["data_offsets"] = {offset, offset + t.nbytes()};
    header[name] = std::move(info);
    offset += t.nbytes();
  }
  std::string text = header.dump();
  // Pad with spaces (allowed by the format) so the data starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t length = text.size();

  detail::AtomicFile file(path, "save_safetensors");
  file.write(&length, 8);
  file.write(text.data(), text.size());
  for (const auto& [name, t] : ordered) file.write(t.raw(), t.nbytes());
  file.commit();
}

SafetensorsContents load_safetensors(const std::string& path) {
  InputFile file(path);
  if (file.size() < 8)
    fail(
        "{}: too short for a safetensors file: {} bytes, but the 8-byte header length alone "
        "needs 8",
        path, file.size());
  uint64_t header_length = 0;
  file.read_at(0, &header_length, 8);
  if (header_length > file.size() - 8)
    fail(
        "{}: the header length at offset 0 says {} bytes, beyond the end of the file (file size "
        "{}, so at most {}); the file is truncated or not a safetensors file",
        path, header_length, file.size(), file.size() - 8);
  if (header_length > kMaxHeaderBytes)
    fail(
        "{}: the header length at offset 0 says {} bytes, more than the {} a safetensors header "
        "may "
        "have",
        path, header_length, kMaxHeaderBytes);
  std::string text(header_length, '\0');
  file.read_at(8, text.data(), header_length);
  if (text.empty() || text[0] != '{')
    fail("{}: the header at offset 8 must be a JSON object starting with '{{'", path);

  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    // Any of nlohmann's errors, not only parse_error: a number too large for a double
    // ("1E999") is an out_of_range thrown while parsing (found by fuzz_safetensors).
    fail("{}: the header (offset 8, {} bytes) is not valid JSON: {}", path, header_length,
         e.what());
  }
  if (!header.is_object()) fail("{}: the header must be a JSON object", path);

  SafetensorsContents out;
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == kMetadataKey) {
      if (!info.is_object()) fail("{}: \"__metadata__\" must be an object of strings", path);
      for (const auto& [key, value] : info.items()) {
        if (!value.is_string())
          fail("{}: \"__metadata__\" value of \"{}\" must be a string, got {}", path, key,
               value.dump());
        out.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, info));
  }

  // The data section must be covered exactly: every byte belongs to one tensor, none to two.
  const uint64_t data_start = 8 + header_length;
  const uint64_t data_size = file.size() - data_start;
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries) {
    if (e.end > data_size)
      fail(
          "{}: tensor '{}' has data_offsets [{}, {}] beyond the end of the data ({} bytes after "
          "the header); the file is truncated or the header is corrupt",
          path, e.name, e.begin, e.end, data_size);
    by_offset.push_back(&e);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry* e : by_offset) {
    if (e->begin < covered)
      fail("{}: tensors '{}' (data_offsets [{}, {}]) and '{}' ([{}, {}]) overlap", path,
           previous->name, previous->begin, previous->end, e->name, e->begin, e->end);
    if (e->begin > covered)
      fail("{}: bytes [{}, {}) of the data belong to no tensor (the format allows no holes)", path,
           covered, e->begin);
    if (e->end > covered) {
      covered = e->end;
      previous = e;
    }
  }
  if (covered != data_size)
    fail(
        "{}: the tensors cover {} bytes of data but the file holds {} after the header ({} "
        "unexpected trailing bytes)",
        path, covered, data_size, data_size - covered);

  for (const Entry& e : entries) {
    Tensor t(e.shape, e.dtype);
    file.read_at(data_start + e.begin, t.raw(), e.end - e.begin);
    out.tensors[e.name] = std::move(t);
  }
  return out;
}

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
  for (const auto& [name, p] : params) {
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
  }
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
  return state;
}

}  // namespace dg
