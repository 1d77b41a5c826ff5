// Progress: a redrawn bar on terminals, plain log lines elsewhere.
#include "deltagraph/train/progress.h"

#include <unistd.h>

#include <chrono>
#include <cmath>

#include "deltagraph/core/error.h"

namespace dg {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "-:--";
  const auto total = static_cast<int64_t>(std::llround(seconds));
  const int64_t h = total / 3600, m = total / 60 % 60, s = total % 60;
  return h ? fmt::format("{}:{:02}:{:02}", h, m, s) : fmt::format("{}:{:02}", m, s);
}

Progress::Progress(int64_t epochs, int64_t batches_per_epoch, ProgressOptions options)
    : epochs_(epochs), batches_(batches_per_epoch), options_(std::move(options)) {
  if (epochs < 1) fail("Progress: epochs must be at least 1, got {}", epochs);
  if (batches_per_epoch < 1)
    fail("Progress: batches_per_epoch must be at least 1, got {}", batches_per_epoch);
  if (!options_.out) fail("Progress: the output stream is null");
  if (options_.log_every < 0) fail("Progress: log_every must be >= 0, got {}", options_.log_every);
  if (options_.bar_width < 0) fail("Progress: bar_width must be >= 0, got {}", options_.bar_width);
  if (!options_.clock)
    options_.clock = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
  using Mode = ProgressOptions::Mode;
  bar_ = options_.mode == Mode::bar ||
         (options_.mode == Mode::automatic && ::isatty(::fileno(options_.out)));
  epoch_start_ = now();
}

double Progress::now() const { return options_.clock(); }

double Progress::images_per_second() const {
  const double elapsed = now() - epoch_start_;
  return elapsed > 0 ? static_cast<double>(images_) / elapsed : 0.0;
}

void Progress::start_epoch(int64_t epoch) {
  if (epoch < 0) fail("Progress::start_epoch: epoch must be >= 0, got {}", epoch);
  epoch_ = epoch;
  images_ = done_ = 0;
  loss_sum_ = 0;
  last_draw_ = -1e300;
  epoch_start_ = now();
}

std::string Progress::status(int64_t done) const {
  std::string line = fmt::format("epoch {}/{} ", epoch_ + 1, epochs_);
  if (bar_) {
    const int width = options_.bar_width;
    const auto filled = static_cast<int>(static_cast<double>(width) * static_cast<double>(done) /
                                         static_cast<double>(batches_));
    std::string bar(static_cast<size_t>(width), ' ');
    for (int i = 0; i < filled && i < width; ++i) bar[i] = '=';
    if (filled < width) bar[filled] = '>';
    line += fmt::format("[{}] {}/{}", bar, done, batches_);
  } else {
    line += fmt::format("batch {}/{}", done, batches_);
  }
  const double elapsed = now() - epoch_start_;
  line += fmt::format(" loss {:.4f}", mean_loss());
  if (elapsed > 0) {
    line += fmt::format(" {:.0f} img/s ETA {}", static_cast<double>(images_) / elapsed,
                        format_duration(elapsed / static_cast<double>(done) *
                                        static_cast<double>(batches_ - done)));
  }
  return line;
}

void Progress::update(int64_t batch, int64_t images, double loss) {
  if (batch < 0 || batch >= batches_)
    fail("Progress::update: batch {} is outside [0, {})", batch, batches_);
  if (images < 0) fail("Progress::update: images must be >= 0, got {}", images);
  done_ = batch + 1;
  images_ += images;
  loss_sum_ += loss * static_cast<double>(images);
  if (bar_) {
    const double t = now();
    if (t - last_draw_ < options_.redraw_seconds && done_ != batches_) return;
    last_draw_ = t;
    // \x1b[K clears what a longer previous line left behind.
    fmt::print(options_.out, "\r{}\x1b[K", status(done_));
  } else if (options_.log_every > 0 && done_ % options_.log_every == 0) {
    fmt::print(options_.out, "{}\n", status(done_));
  }
  std::fflush(options_.out);
}

void Progress::end_epoch(const std::string& extra) {
  const double elapsed = now() - epoch_start_;
  std::string line = fmt::format("epoch {}/{} done: loss {:.4f}, {:.0f} img/s, {:.1f} s",
                                 epoch_ + 1, epochs_, mean_loss(), images_per_second(), elapsed);
  if (!extra.empty()) line += ", " + extra;
  if (bar_)
    fmt::print(options_.out, "\r{}\x1b[K\n", line);
  else
    fmt::print(options_.out, "{}\n", line);
  std::fflush(options_.out);
}

}  // namespace dg
