// Internal: writing a file so that a crash never leaves it half-written.
#pragma once

#include <cstddef>
#include <string>

namespace dg::detail {

// Writes to a temporary file in the target's folder; commit() flushes it to disk (fsync) and
// renames it over the target, which is atomic on POSIX file systems: readers see the old file
// or the new one, never a mix. Without commit() (an exception on the way) the temporary file
// is removed and the target is untouched. Errors are dg::Error naming `who` and the path.
class AtomicFile {
 public:
  AtomicFile(std::string path, std::string who);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void commit();

 private:
  [[noreturn]] void fail_errno(const char* action);

  std::string path_, temp_path_, who_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace dg::detail
