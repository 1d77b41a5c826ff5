// Progress output with a fake clock: the bar on terminals, log lines elsewhere.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "deltagraph/deltagraph.h"
#include "test_util.h"

using dg::test::ThrowsError;
using Mode = dg::ProgressOptions::Mode;

namespace {

// Captures what a Progress writes (open_memstream) and drives its clock.
struct Capture {
  char* buffer = nullptr;
  size_t size = 0;
  std::FILE* file = open_memstream(&buffer, &size);
  double now = 100.0;
  ~Capture() {
    std::fclose(file);
    std::free(buffer);
  }
  std::string text() {
    std::fflush(file);
    return std::string(buffer, size);
  }
  dg::ProgressOptions options(Mode mode, int64_t log_every = 2) {
    return {.out = file,
            .mode = mode,
            .log_every = log_every,
            .bar_width = 10,
            .redraw_seconds = 0.1,
            .clock = [this] { return now; }};
  }
};

TEST(Progress, LogModePrintsPlainLines) {
  Capture c;
  dg::Progress p(3, 4, c.options(Mode::log));
  EXPECT_FALSE(p.is_bar());
  p.start_epoch(1);
  for (int64_t b = 0; b < 4; ++b) {
    c.now += 0.5;  // 0.5 s per batch of 100 images: 200 img/s
    p.update(b, 100, b < 2 ? 1.0 : 0.5);
  }
  p.end_epoch("test accuracy 0.9000");
  EXPECT_EQ(c.text(),
            "epoch 2/3 batch 2/4 loss 1.0000 200 img/s ETA 0:01\n"
            "epoch 2/3 batch 4/4 loss 0.7500 200 img/s ETA 0:00\n"
            "epoch 2/3 done: loss 0.7500, 200 img/s, 2.0 s, test accuracy 0.9000\n");
  EXPECT_DOUBLE_EQ(p.mean_loss(), 0.75);
}

TEST(Progress, BarModeRedrawsInPlace) {
  Capture c;
  dg::Progress p(1, 4, c.options(Mode::bar));
  EXPECT_TRUE(p.is_bar());
  p.start_epoch(0);
  c.now += 1;
  p.update(0, 10, 2.0);
  p.update(1, 10, 2.0);  // same instant: not redrawn (at most every 0.1 s)
  c.now += 1;
  p.update(2, 10, 2.0);
  p.update(3, 10, 2.0);  // the last batch is always drawn
  p.end_epoch();
  EXPECT_EQ(c.text(),
            "\repoch 1/1 [==>       ] 1/4 loss 2.0000 10 img/s ETA 0:03\x1b[K"
            "\repoch 1/1 [=======>  ] 3/4 loss 2.0000 15 img/s ETA 0:01\x1b[K"
            "\repoch 1/1 [==========] 4/4 loss 2.0000 20 img/s ETA 0:00\x1b[K"
            "\repoch 1/1 done: loss 2.0000, 20 img/s, 2.0 s\x1b[K\n");
}

TEST(Progress, AutomaticModeIsLogWhenNotATerminal) {
  Capture c;
  dg::Progress p(1, 1, c.options(Mode::automatic));
  EXPECT_FALSE(p.is_bar());
}

TEST(Progress, FormatsDurationsAndRejectsBadInput) {
  EXPECT_EQ(dg::format_duration(65), "1:05");
  EXPECT_EQ(dg::format_duration(3723), "1:02:03");
  EXPECT_EQ(dg::format_duration(-1), "-:--");
  Capture c;
  dg::Progress p(1, 2, c.options(Mode::log));
  EXPECT_TRUE(ThrowsError([&] { p.update(2, 1, 0.0); }, {"batch 2 is outside [0, 2)"}));
  EXPECT_TRUE(ThrowsError([&] { dg::Progress(0, 2); }, {"epochs must be at least 1"}));
}

}  // namespace
