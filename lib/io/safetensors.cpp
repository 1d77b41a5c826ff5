// safetensors files: reading (validated before anything is allocated) and atomic writing.
#include "deltagraph/io/safetensors.h"

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
static_assert(
    std::endian::native == std::endian::little,
    "safetensors.cpp assumes a little-endian machine (safetensors data is little-endian)");

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// The safetensors reference implementation refuses larger headers; so do we, before reading.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

}  // namespace

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

namespace {

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
  if (shape.size() > static_cast<size_t>(Shape::kMaxDims))
    throw bad(fmt::format("shape {} has {} axes; deltagraph tensors have at most {}",
                          shape_text(shape), shape.size(), Shape::kMaxDims));
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

}  // namespace dg
