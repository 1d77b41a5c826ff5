// Image grids and PNG writing through libpng's simplified API (png_image), which reports errors
// as messages instead of longjmp, so no C++ object is ever skipped over.
#include "deltagraph/io/image.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "atomic_file.h"

namespace dg {

namespace {

// Images as float64 [N, H, W] (a copy), after checking the shape.
Tensor as_planes(const Tensor& images, const char* who) {
  if (!images.defined() || !is_floating(images.dtype()))
    fail("{}: images must be a float32/float64 tensor [N,1,H,W] or [N,H,W]", who);
  const Shape& s = images.shape();
  if (s.size() == 4 && s[1] == 1) return images.to(DType::f64).reshape({s[0], s[2], s[3]});
  if (s.size() == 3) return images.to(DType::f64);
  fail("{}: images must be [N,1,H,W] (one channel) or [N,H,W], got {}", who, s);
}

// Pixel counts above this are certainly a mistake (and could overflow the PNG encoder's sizes).
constexpr int64_t kMaxSide = int64_t{1} << 16;

}  // namespace

Tensor image_grid(const Tensor& images, ImageGridOptions o) {
  const char* who = "image_grid";
  const Tensor planes = as_planes(images, who);
  const int64_t n = planes.size(0), h = planes.size(1), w = planes.size(2);
  if (n < 1 || h < 1 || w < 1)
    fail("{}: no pixels to draw in images of shape {}", who, images.shape());
  if (o.rows < 0 || o.cols < 0 || o.margin < 0 || o.scale < 1)
    fail("{}: rows ({}), cols ({}) and margin ({}) must be >= 0 and scale ({}) >= 1", who, o.rows,
         o.cols, o.margin, o.scale);
  int64_t cols = o.cols, rows = o.rows;
  if (cols == 0 && rows == 0)
    cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  if (cols == 0) cols = (n + rows - 1) / rows;
  if (rows == 0) rows = (n + cols - 1) / cols;
  if (rows * cols < n)
    fail("{}: a grid of {} rows x {} cols has {} tiles, fewer than the {} images", who, rows, cols,
         rows * cols, n);

  const double* p = planes.data<double>();
  double low = o.low, high = o.high;
  if (low == high) {  // the images' own range
    low = *std::min_element(p, p + planes.numel());
    high = *std::max_element(p, p + planes.numel());
    if (low == high) high = low + 1;  // a constant grid: draw it black rather than divide by 0
  }
  if (!std::isfinite(low) || !std::isfinite(high) || high < low)
    fail("{}: the value range [{}, {}] must be finite with low < high", who, low, high);
  auto grey = [&](double v) {
    return std::isnan(v) ? 0.0 : std::clamp((v - low) / (high - low), 0.0, 1.0);
  };

  const int64_t grid_h = (rows * (h + o.margin) + o.margin) * o.scale;
  const int64_t grid_w = (cols * (w + o.margin) + o.margin) * o.scale;
  if (grid_h > kMaxSide || grid_w > kMaxSide)
    fail("{}: the grid would be {}x{} pixels, more than {} on a side", who, grid_h, grid_w,
         kMaxSide);
  Tensor grid = Tensor::full({grid_h, grid_w}, grey(o.margin_value), DType::f32);
  float* g = grid.data<float>();
  for (int64_t k = 0; k < n; ++k) {
    const int64_t top = (o.margin + (k / cols) * (h + o.margin)) * o.scale;
    const int64_t left = (o.margin + (k % cols) * (w + o.margin)) * o.scale;
    for (int64_t y = 0; y < h * o.scale; ++y)
      for (int64_t x = 0; x < w * o.scale; ++x)
        g[(top + y) * grid_w + left + x] =
            static_cast<float>(grey(p[(k * h + y / o.scale) * w + x / o.scale]));
  }
  return grid;
}

void write_png(const std::string& path, const Tensor& image, double low, double high) {
  const char* who = "write_png";
  if (!image.defined() || !is_floating(image.dtype()) || image.dim() != 2)
    fail("{}: {}: the image must be a float tensor [H,W], got {}", who, path,
         image.defined() ? fmt::format("{} {}", dtype_name(image.dtype()), image.shape())
                         : std::string("an undefined tensor"));
  const int64_t h = image.size(0), w = image.size(1);
  if (h < 1 || w < 1 || h > kMaxSide || w > kMaxSide)
    fail("{}: {}: an image of {}x{} pixels cannot be written (1 to {} on a side)", who, path, h, w,
         kMaxSide);
  if (!std::isfinite(low) || !std::isfinite(high) || !(high > low))
    fail("{}: {}: the value range [{}, {}] must be finite with low < high", who, path, low, high);

  const Tensor values = image.to(DType::f64);
  const double* v = values.data<double>();
  std::vector<png_byte> pixels(static_cast<size_t>(h * w));
  for (size_t i = 0; i < pixels.size(); ++i) {
    const double t = std::isnan(v[i]) ? 0.0 : std::clamp((v[i] - low) / (high - low), 0.0, 1.0);
    pixels[i] = static_cast<png_byte>(std::lround(t * 255.0));
  }

  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(w);
  png.height = static_cast<png_uint_32>(h);
  png.format = PNG_FORMAT_GRAY;
  // Encode into memory first (the first call asks for the size), then write atomically.
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&png, nullptr, &size, 0, pixels.data(), 0, nullptr))
    fail("{}: {}: libpng: {}", who, path, png.message);
  std::vector<png_byte> encoded(size);
  if (!png_image_write_to_memory(&png, encoded.data(), &size, 0, pixels.data(), 0, nullptr))
    fail("{}: {}: libpng: {}", who, path, png.message);
  png_image_free(&png);

  detail::AtomicFile file(path, who);
  file.write(encoded.data(), size);
  file.commit();
}

void write_png_grid(const std::string& path, const Tensor& images, ImageGridOptions options) {
  write_png(path, image_grid(images, options), 0.0, 1.0);
}

}  // namespace dg
