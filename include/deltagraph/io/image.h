// deltagraph: PNG output of image grids (through libpng).
//
//   dg::write_png_grid("out/reconstructions.png", images, {.cols = 8});   // images [N,1,H,W]
//
// Values are mapped from [low, high] (default [0, 1]) to 0..255 and clamped, so images
// normalised some other way pass their range, or {.low = 0, .high = 0} to stretch each grid's
// own minimum..maximum.
#pragma once

#include <cstdint>
#include <string>

#include "deltagraph/core/tensor.h"

namespace dg {

struct ImageGridOptions {
  int64_t rows = 0;           // 0: as many as needed for the images
  int64_t cols = 0;           // 0: ceil(sqrt(N)) (or N / rows, rounded up, when rows is given)
  int64_t margin = 2;         // pixels between tiles and around the grid
  double margin_value = 1.0;  // grey level of the margins, in the same units as the images
  double low = 0.0;           // the value shown black
  double high = 1.0;          // the value shown white; low == high: use the grid's own min and max
  int64_t scale = 1;  // each pixel drawn as a scale x scale block (small images become visible)
};

// Tiles images [N,1,H,W] or [N,H,W] (float32/float64) row by row into a grid [rows*H + ..,
// cols*W + ..] of grey levels in [0, 1] (before scaling up); unused tiles are left as margin.
Tensor image_grid(const Tensor& images, ImageGridOptions options = {});

// Writes a grayscale 8-bit PNG of image [H,W] (float), mapping [low, high] to 0..255 with
// clamping. The file is written to a temporary file and renamed, like checkpoints.
void write_png(const std::string& path, const Tensor& image, double low = 0.0, double high = 1.0);

// image_grid + write_png.
void write_png_grid(const std::string& path, const Tensor& images, ImageGridOptions options = {});

}  // namespace dg
