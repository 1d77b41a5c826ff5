// libFuzzer target: the IDX reader, raw and gzip (the bytes are written to a file, as users'
// downloads are). Any input must load or be rejected with dg::Error.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "deltagraph/core/error.h"
#include "deltagraph/train/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/dg_fuzz_idx_" + std::to_string(getpid());
  for (const char* suffix : {"", ".gz"}) {
    const std::string file = path + suffix;
    std::FILE* f = std::fopen(file.c_str(), "wb");
    if (!f) return 0;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    try {
      dg::read_idx(file, {.max_items = 1000});
    } catch (const dg::Error&) {
    }
    std::remove(file.c_str());
  }
  return 0;
}
