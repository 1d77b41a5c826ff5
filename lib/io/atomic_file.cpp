// AtomicFile: temporary file + fsync + rename.
#include "atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "deltagraph/core/error.h"

namespace dg::detail {

namespace {

std::string folder_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(std::string path, std::string who)
    : path_(std::move(path)), who_(std::move(who)) {
  if (path_.empty() || path_.back() == '/') fail("{}: '{}' is not a file name", who_, path_);
  // Same folder as the target, so rename() never crosses file systems.
  temp_path_ = path_ + ".tmp-XXXXXX";
  std::vector<char> name(temp_path_.begin(), temp_path_.end());
  name.push_back('\0');
  fd_ = ::mkstemp(name.data());
  if (fd_ < 0)
    fail("{}: cannot create a temporary file in '{}' to write {}: {}", who_, folder_of(path_),
         path_, std::strerror(errno));
  temp_path_ = name.data();
  ::fchmod(fd_, 0644);  // mkstemp makes the file private (0600); a checkpoint or image is not
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(temp_path_.c_str());
}

void AtomicFile::fail_errno(const char* action) {
  const int error = errno;
  fail("{}: cannot write {} ({} {}): {}", who_, path_, action, temp_path_, std::strerror(error));
}

void AtomicFile::write(const void* data, size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno("writing");
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) fail_errno("flushing");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail_errno("closing");
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail_errno("renaming");
  committed_ = true;
  // Make the rename itself durable. Some file systems cannot sync a folder; the data is
  // already safe then, so a failure here is not an error.
  const int dir = ::open(folder_of(path_).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace dg::detail
