// PNG grids, read back with libpng.
#include <gtest/gtest.h>
#include <png.h>

#include <cstring>

#include "deltagraph/deltagraph.h"
#include "test_util.h"
#include "train_util.h"

using dg::Tensor;
using dg::test::TempDir;
using dg::test::ThrowsError;

namespace {

struct Gray {
  uint32_t width = 0, height = 0;
  std::vector<unsigned char> pixels;
  int at(uint32_t y, uint32_t x) const { return pixels[y * width + x]; }
};

Gray read_png(const std::string& path) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  Gray out;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    ADD_FAILURE() << "libpng cannot read " << path << ": " << image.message;
    return out;
  }
  EXPECT_EQ(image.format & PNG_FORMAT_FLAG_COLOR, 0u) << "written as grayscale";
  image.format = PNG_FORMAT_GRAY;
  out.width = image.width;
  out.height = image.height;
  out.pixels.resize(PNG_IMAGE_SIZE(image));
  EXPECT_TRUE(png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr))
      << image.message;
  return out;
}

TEST(Png, GridTilesImagesWithMargins) {
  TempDir dir;
  // Three 2x3 images: all 0, all 0.5, a ramp; 2 columns, margin 1 (white).
  Tensor images = dg::test::f32({0, 0, 0, 0, 0, 0,              //
                                 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,  //
                                 0, 0.2, 0.4, 0.6, 0.8, 1.0},
                                {3, 1, 2, 3});
  const std::string path = dir.file("grid.png");
  dg::write_png_grid(path, images, {.cols = 2, .margin = 1});
  Gray g = read_png(path);
  ASSERT_EQ(g.width, 2u * (3 + 1) + 1);
  ASSERT_EQ(g.height, 2u * (2 + 1) + 1);
  EXPECT_EQ(g.at(0, 0), 255);  // margin
  EXPECT_EQ(g.at(1, 1), 0);    // image 0
  EXPECT_EQ(g.at(1, 5), 128);  // image 1 (0.5 * 255 rounded)
  EXPECT_EQ(g.at(4, 1), 0);    // image 2, first pixel
  EXPECT_EQ(g.at(5, 3), 255);  // image 2, last pixel
  EXPECT_EQ(g.at(4, 2), 51);   // 0.2
  EXPECT_EQ(g.at(4, 5), 255);  // the unused fourth tile is margin colour
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"grid.png"});
}

TEST(Png, RangeClampingAutoRangeAndScale) {
  TempDir dir;
  Tensor images = dg::test::f32({-1, 0, 1, 2}, {1, 2, 2});  // [N,H,W] works too
  dg::write_png_grid(dir.file("a.png"), images, {.margin = 0, .low = 0, .high = 1});
  Gray clamped = read_png(dir.file("a.png"));
  EXPECT_EQ(clamped.pixels, (std::vector<unsigned char>{0, 0, 255, 255}));
  dg::write_png_grid(dir.file("b.png"), images, {.margin = 0, .low = 0, .high = 0, .scale = 2});
  Gray stretched = read_png(dir.file("b.png"));
  ASSERT_EQ(stretched.width, 4u);
  EXPECT_EQ(stretched.at(0, 0), 0);
  EXPECT_EQ(stretched.at(1, 1), 0);   // the same source pixel, scaled up
  EXPECT_EQ(stretched.at(0, 2), 85);  // 0 in [-1, 2]
  EXPECT_EQ(stretched.at(3, 3), 255);
}

TEST(Png, BadInputIsAnError) {
  TempDir dir;
  EXPECT_TRUE(ThrowsError(
      [&] {
        dg::write_png_grid(dir.file("x.png"), Tensor::zeros({2, 3, 4, 4}));
      },
      {"image_grid", "[N,1,H,W] (one channel) or [N,H,W], got [2,3,4,4]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        dg::write_png_grid(dir.file("x.png"), Tensor::zeros({5, 4, 4}), {.rows = 2, .cols = 2});
      },
      {"2 rows x 2 cols has 4 tiles, fewer than the 5 images"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        dg::write_png(dir.file("no/dir/x.png"), Tensor::zeros({4, 4}));
      },
      {"write_png", "cannot create a temporary file"}));
  EXPECT_TRUE(ThrowsError([&] { dg::write_png(dir.file("x.png"), Tensor::zeros({4})); },
                          {"must be a float tensor [H,W]"}));
}

}  // namespace
