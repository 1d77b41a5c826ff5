// deltagraph: training progress on the terminal.
//
//   dg::Progress progress(epochs, batches.size());
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     progress.start_epoch(epoch);
//     for (...) progress.update(batch.index, batch.labels.size(0), loss.item());
//     progress.end_epoch(fmt::format("test accuracy {:.4f}", accuracy));
//   }
//
// On a terminal (isatty) one line is redrawn in place with '\r' (ETA: time left in the epoch):
//   epoch 2/10 [=========>          ] 450/938 loss 0.3412 5231 img/s ETA 0:06
// Elsewhere (a log file, a pipe, CI) it prints plain lines instead, one every `log_every`
// batches, and always one per epoch:
//   epoch 2/10 batch 450/938 loss 0.3412 5231 img/s ETA 0:06
//   epoch 2/10 done: loss 0.3298, 5240 img/s, 11.5 s, test accuracy 0.8874
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace dg {

struct ProgressOptions {
  enum class Mode : uint8_t { automatic, bar, log };
  std::FILE* out = stdout;
  Mode mode = Mode::automatic;  // automatic: bar if `out` is a terminal, log otherwise
  int64_t log_every = 100;      // log mode: a line every this many batches (0: per epoch only)
  int bar_width = 30;
  double redraw_seconds = 0.1;  // bar mode: redraw at most this often (and on the last batch)
  // Seconds from any fixed origin; defaults to a monotonic clock. Tests pass a fake one.
  std::function<double()> clock;
};

class Progress {
 public:
  Progress(int64_t epochs, int64_t batches_per_epoch, ProgressOptions options = {});

  // Starts epoch `epoch` (0-based; shown 1-based) and its timer.
  void start_epoch(int64_t epoch);
  // Batch `batch` (0-based) of the current epoch is done: it held `images` images and its loss
  // was `loss`. The loss shown is the mean over the epoch so far, weighted by images.
  void update(int64_t batch, int64_t images, double loss);
  // Ends the epoch with a summary line; `extra` (e.g. "test accuracy 0.9012") is appended.
  void end_epoch(const std::string& extra = "");

  bool is_bar() const { return bar_; }
  // Mean loss of the current (or just finished) epoch.
  double mean_loss() const { return images_ ? loss_sum_ / static_cast<double>(images_) : 0.0; }
  // Images per second in the current (or just finished) epoch.
  double images_per_second() const;

 private:
  std::string status(int64_t done) const;
  double now() const;

  int64_t epochs_, batches_;
  ProgressOptions options_;
  bool bar_ = false;
  int64_t epoch_ = 0, images_ = 0, done_ = 0;
  double loss_sum_ = 0, epoch_start_ = 0, last_draw_ = -1e300;
};

// "1:05", "1:02:03": a duration in seconds as minutes:seconds or hours:minutes:seconds.
std::string format_duration(double seconds);

}  // namespace dg
