// deltagraph: IDX files, the MNIST format (gzip-compressed or raw). Depends on the tensor only.
//
// Every problem with a file (missing, truncated, corrupt gzip stream, wrong magic number, dims
// that do not match the length) is a dg::Error naming the file, what was expected and what was
// found. Nothing is allocated before the header's dims have been checked against what the file
// can hold.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "deltagraph/core/tensor.h"

namespace dg {

// An IDX array of unsigned bytes (the only element type MNIST-format files use).
struct IdxArray {
  Shape dims;                 // as in the header, e.g. [10000, 28, 28]; dims[0] is cut to max_items
  std::vector<uint8_t> data;  // dims.product() bytes, row-major
};

struct IdxReadOptions {
  // The number of dimensions the file must have (3 for images, 1 for labels); 0 accepts 1..4.
  int expected_dims = 0;
  // Reads only the first max_items entries along dims[0] (-1: all); the rest of the file is not
  // decompressed (and not checked).
  int64_t max_items = -1;
};

// Reads an IDX file, gzip-compressed (detected by its magic bytes, whatever its name) or raw.
// Checks the magic number (0x0000 08 nd: unsigned bytes, nd dimensions), that the length matches
// the dims exactly (no missing and no trailing bytes), and the gzip stream's integrity.
IdxArray read_idx(const std::string& path, IdxReadOptions options = {});

// MNIST images (magic 0x00000803, [N, H, W]) as float32 [N, 1, H, W] scaled to [0, 1].
Tensor load_idx_images(const std::string& path, int64_t max_items = -1);
// MNIST labels (magic 0x00000801, [N]) as int64 [N]. With num_classes > 0, every label must be
// below it (a corrupt label byte is reported with its index and file offset).
Tensor load_idx_labels(const std::string& path, int64_t num_classes = 10, int64_t max_items = -1);

}  // namespace dg
