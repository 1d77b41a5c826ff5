// IDX files (MNIST format), gzip-compressed or raw: read and validated before allocating.
#include "deltagraph/io/idx.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

namespace dg {

namespace {

// ---- a byte stream over a gzip or raw file ----------------------------------------------------

// Reads a file through zlib's gz* functions, which decompress gzip files and pass other files
// through unchanged. Every error names the file.
class ByteStream {
 public:
  explicit ByteStream(const std::string& path) : path_(path) {
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) fail_io("cannot open it: {}", std::strerror(errno));
    if (!S_ISREG(info.st_mode)) fail_io("it is not a regular file");
    file_size_ = static_cast<int64_t>(info.st_size);
    file_ = gzopen(path.c_str(), "rb");
    if (!file_) fail_io("cannot open it: {}", errno ? std::strerror(errno) : "out of memory");
    gzbuffer(file_, 1 << 17);
    compressed_ = gzdirect(file_) == 0;
  }
  ~ByteStream() {
    if (file_) gzclose_r(file_);
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  bool compressed() const { return compressed_; }
  int64_t file_size() const { return file_size_; }
  // Bytes delivered so far (decompressed, for a gzip file).
  int64_t offset() const { return offset_; }
  // True once a gzip stream has stopped before its end (a truncated .gz file).
  bool ended_abruptly() const { return ended_abruptly_; }
  // Where offsets count from, for messages ("of the file", "of the decompressed data"), and why
  // the data stopped if the gzip stream was cut.
  std::string where() const {
    if (!compressed_) return "of the file";
    return ended_abruptly_ ? "of the decompressed data; the gzip stream ends abruptly (zlib: "
                             "unexpected end of file)"
                           : "of the decompressed data";
  }

  // Reads up to `n` bytes; fewer only at the end of the data (or of a truncated gzip stream,
  // see ended_abruptly). Throws on a corrupt gzip stream, quoting zlib's own diagnosis.
  int64_t read(void* buffer, int64_t n) {
    int64_t total = 0;
    auto* out = static_cast<unsigned char*>(buffer);
    while (total < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - total, 1 << 30));
      const int got = gzread(file_, out + total, chunk);
      if (got < 0) fail_stream();
      if (got == 0) {
        // gzread reports a stream that stops before its end as end of data with Z_BUF_ERROR
        // pending.
        int code = Z_OK;
        gzerror(file_, &code);
        if (code == Z_BUF_ERROR)
          ended_abruptly_ = true;
        else if (code != Z_OK)
          fail_stream();
        break;
      }
      total += got;
      offset_ += got;
    }
    return total;
  }

  template <class... Args>
  [[noreturn]] void fail_io(fmt::format_string<Args...> format, Args&&... args) const {
    fail("{}: {}", path_, fmt::format(format, std::forward<Args>(args)...));
  }

 private:
  [[noreturn]] void fail_stream() const {
    int code = Z_OK;
    const char* message = gzerror(file_, &code);
    if (code == Z_ERRNO) fail_io("read error: {}", std::strerror(errno));
    fail_io("corrupt gzip stream after {} decompressed bytes (zlib: {})", offset_,
            message ? message : "unknown error");
  }

  std::string path_;
  gzFile file_ = nullptr;
  int64_t file_size_ = 0;
  int64_t offset_ = 0;
  bool compressed_ = false;
  bool ended_abruptly_ = false;
};

const char* idx_type_name(unsigned code) {
  switch (code) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return "unknown";
  }
}

const char* idx_kind(int dims) { return dims == 1 ? "labels" : dims == 3 ? "images" : "an array"; }

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// a * b for a, b >= 0, or INT64_MAX if that overflows (the checks that follow then fail).
int64_t saturating_mul(int64_t a, int64_t b) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a)
    return std::numeric_limits<int64_t>::max();
  return a * b;
}

// deflate cannot compress better than about 1032:1, so a gzip file of S bytes holds at most
// this many; used to reject absurd dims before reading gigabytes of nothing.
constexpr int64_t kMaxDeflateRatio = 1032;

}  // namespace

// ---- IDX --------------------------------------------------------------------------------------

IdxArray read_idx(const std::string& path, IdxReadOptions options) {
  if (options.expected_dims < 0 || options.expected_dims > Shape::kMaxDims)
    fail("read_idx: expected_dims must be between 0 and {}, got {}", Shape::kMaxDims,
         options.expected_dims);
  ByteStream in(path);

  unsigned char magic[4];
  const int64_t got = in.read(magic, 4);
  if (got < 4)
    in.fail_io("not an IDX file: it holds {} byte{}{}, fewer than the 4-byte magic number", got,
               got == 1 ? "" : "s", in.compressed() ? " once decompressed" : "");
  const uint32_t magic_number = big_endian_u32(magic);
  if (magic[0] != 0 || magic[1] != 0)
    in.fail_io(
        "not an IDX file: magic number 0x{:08x} at offset 0 does not start with two zero "
        "bytes (expected 0x00000803 for images or 0x00000801 for labels)",
        magic_number);
  if (magic[2] != 0x08)
    in.fail_io(
        "element type 0x{:02x} ({}) in magic number 0x{:08x} is not supported; "
        "MNIST-format files hold unsigned bytes (0x08)",
        magic[2], idx_type_name(magic[2]), magic_number);
  const int ndims = magic[3];
  if (options.expected_dims != 0 && ndims != options.expected_dims)
    in.fail_io(
        "magic number 0x{:08x} says {} dimension{} ({}), but {} expected {} (magic number "
        "0x{:08x}); is this the wrong file?",
        magic_number, ndims, ndims == 1 ? "" : "s", idx_kind(ndims),
        idx_kind(options.expected_dims), options.expected_dims,
        0x0800u | static_cast<unsigned>(options.expected_dims));
  if (ndims < 1 || ndims > 4)
    in.fail_io("magic number 0x{:08x} says {} dimensions; MNIST-format files have 1 to 4",
               magic_number, ndims);

  unsigned char dim_bytes[16];
  const int64_t header_size = 4 + 4 * int64_t{ndims};
  if (in.read(dim_bytes, 4 * ndims) < 4 * ndims)
    in.fail_io(
        "truncated header: {} dimensions need a {}-byte header but the data ends at offset {} {}",
        ndims, header_size, in.offset(), in.where());
  IdxArray out;
  int64_t item_bytes = 1;  // bytes per entry along dims[0]
  for (int i = 0; i < ndims; ++i) {
    const int64_t d = big_endian_u32(dim_bytes + 4 * i);
    out.dims.push_back(d);
    if (i > 0) {
      item_bytes = saturating_mul(item_bytes, d);
    }
  }
  const int64_t items = out.dims[0];
  const int64_t announced = saturating_mul(items, item_bytes);  // everything the header announces
  const int64_t wanted_items = options.max_items < 0 ? items : std::min(items, options.max_items);
  const int64_t wanted_bytes = saturating_mul(wanted_items, item_bytes);

  // Check the dims against what the file can hold before allocating anything.
  if (!in.compressed()) {
    const int64_t available = in.file_size() - header_size;
    if (wanted_bytes > available)
      in.fail_io(
          "truncated: the header says dims {} = {} bytes of data after the {}-byte header, "
          "but the file holds only {} (file size {})",
          out.dims, announced, header_size, available, in.file_size());
    if (options.max_items < 0 && announced < available)
      in.fail_io(
          "{} unexpected bytes after the data: the header says dims {} = {} bytes after the "
          "{}-byte header, so the file should be {} bytes but it is {}",
          available - announced, out.dims, announced, header_size, header_size + announced,
          in.file_size());
  } else if (wanted_bytes / kMaxDeflateRatio > in.file_size()) {
    in.fail_io(
        "the header says dims {} ({} bytes of data), more than a {}-byte gzip file can hold "
        "(deflate compresses at most about {}:1); the header is corrupt",
        out.dims, wanted_bytes, in.file_size(), kMaxDeflateRatio);
  }

  // Read in chunks, growing the buffer only as data actually arrives, so a corrupt header can
  // never make us allocate much more than the file really holds.
  constexpr int64_t kChunk = int64_t{1} << 22;
  out.data.reserve(static_cast<size_t>(std::min(wanted_bytes, kChunk)));
  while (static_cast<int64_t>(out.data.size()) < wanted_bytes) {
    const int64_t before = static_cast<int64_t>(out.data.size());
    const int64_t n = std::min(kChunk, wanted_bytes - before);
    out.data.resize(static_cast<size_t>(before + n));
    const int64_t read = in.read(out.data.data() + before, n);
    if (read < n)
      in.fail_io(
          "truncated: the header says dims {} = {} bytes of data after the {}-byte header, "
          "but the data ends after {} bytes (at offset {} {})",
          out.dims, wanted_bytes, header_size, before + read, header_size + before + read,
          in.where());
  }
  if (wanted_items == items) {
    // Nothing may follow the data. Reading past the end also makes zlib verify the gzip
    // trailer's CRC and length, which catches corruption inside the data.
    unsigned char extra;
    if (in.read(&extra, 1) != 0)
      in.fail_io(
          "unexpected bytes after the data: the header says dims {} = {} bytes after the "
          "{}-byte header, but more follow at offset {} {}",
          out.dims, wanted_bytes, header_size, header_size + wanted_bytes, in.where());
    if (in.ended_abruptly())
      in.fail_io(
          "truncated: all {} bytes of data are there, but the gzip stream ends before its "
          "trailer (CRC-32 and length), so its integrity cannot be checked",
          wanted_bytes);
  }
  out.dims[0] = wanted_items;
  return out;
}

Tensor load_idx_images(const std::string& path, int64_t max_items) {
  IdxArray a = read_idx(path, {.expected_dims = 3, .max_items = max_items});
  Tensor t({a.dims[0], 1, a.dims[1], a.dims[2]}, DType::f32);
  float* out = t.data<float>();
  for (size_t i = 0; i < a.data.size(); ++i) out[i] = static_cast<float>(a.data[i]) / 255.0f;
  return t;
}

Tensor load_idx_labels(const std::string& path, int64_t num_classes, int64_t max_items) {
  IdxArray a = read_idx(path, {.expected_dims = 1, .max_items = max_items});
  Tensor t({a.dims[0]}, DType::i64);
  int64_t* out = t.data<int64_t>();
  for (size_t i = 0; i < a.data.size(); ++i) {
    if (num_classes > 0 && a.data[i] >= num_classes)
      fail(
          "{}: label {} of entry {} (at offset {}) is outside [0, {}); the file is corrupt or not "
          "a labels file for {} classes",
          path, a.data[i], i, 8 + i, num_classes, num_classes);
    out[i] = a.data[i];
  }
  return t;
}

}  // namespace dg
