// A process killed (SIGKILL, no chance to clean up) at random points while it writes
// checkpoints never leaves a broken one: the file on disk always loads and holds one complete
// version, the previous or the new.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/resource.h>

#include <filesystem>
#include <random>

#include "deltagraph/train/checkpoint.h"
#include "deltagraph/train/nn.h"
#include "test_util.h"

namespace dg {
namespace {

// Version v of the model: every weight equals v (large enough that a write takes a while).
ParamList model(double version) {
  ParamList params(1);
  params.add("conv.weight", Tensor::full({64, 64, 3, 3}, version));
  params.add("fc.weight", Tensor::full({256, 1024}, version));
  params.add("fc.bias", Tensor::full({256}, version, DType::f64));
  return params;
}

// Loads the checkpoint and checks it holds one complete version (every element equal).
void expect_one_complete_version(const std::string& path, const std::string& when) {
  ParamList loaded = model(-1);
  ASSERT_NO_THROW(load_checkpoint(path, loaded)) << when;
  const double version = loaded.at("conv.weight").value().at(0);
  for (const auto& [name, p] : loaded)
    for (int64_t i = 0; i < p.numel(); i += 97)
      ASSERT_EQ(p.value().at(i), version) << name << ", " << when;
}

struct TempDir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("dg_kill_" + std::to_string(getpid()));
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// SIGKILL after a random number of completed saves: the child reports each save through a pipe,
// so the kill lands somewhere inside the next one (writing, syncing or renaming).
TEST(CheckpointKill, SigkillDuringSavesLeavesTheLastCompleteCheckpoint) {
  TempDir dir;
  const std::string path = (dir.path / "model.safetensors").string();
  save_checkpoint(path, model(0));
  std::mt19937 rng(7);
  for (int round = 0; round < 8; ++round) {
    int pipe_fds[2];
    ASSERT_EQ(pipe(pipe_fds), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      close(pipe_fds[0]);
      for (int v = 1;; ++v) {
        save_checkpoint(path, model(round * 1000 + v));
        const char done = 1;
        if (write(pipe_fds[1], &done, 1) != 1) _exit(1);
      }
    }
    close(pipe_fds[1]);
    const int saves = std::uniform_int_distribution<int>(0, 3)(rng);
    char byte;
    for (int i = 0; i < saves; ++i) ASSERT_EQ(read(pipe_fds[0], &byte, 1), 1);
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    close(pipe_fds[0]);
    EXPECT_TRUE(WIFSIGNALED(status));
    expect_one_complete_version(path, "after SIGKILL in round " + std::to_string(round));
  }
}

// Killed by the kernel in the middle of writing: a file-size limit at a random byte makes the
// write that crosses it raise SIGXFSZ, whose default action ends the process on the spot.
TEST(CheckpointKill, KilledMidWriteAtRandomBytesLeavesThePreviousCheckpoint) {
  TempDir dir;
  const std::string path = (dir.path / "model.safetensors").string();
  save_checkpoint(path, model(0));
  const auto full_size = static_cast<int64_t>(std::filesystem::file_size(path));
  std::mt19937 rng(11);
  for (int round = 0; round < 8; ++round) {
    const int64_t limit = std::uniform_int_distribution<int64_t>(1, full_size - 1)(rng);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      rlimit r{static_cast<rlim_t>(limit), static_cast<rlim_t>(limit)};
      setrlimit(RLIMIT_FSIZE, &r);
      try {
        save_checkpoint(path, model(round + 1));
      } catch (...) {
      }
      _exit(0);  // reached only if the write failed with an error instead of the signal
    }
    int status = 0;
    waitpid(child, &status, 0);
    expect_one_complete_version(path, "after a kill at byte " + std::to_string(limit));
    ParamList loaded = model(-1);
    load_checkpoint(path, loaded);
    EXPECT_EQ(loaded.at("fc.bias").value().at(0), 0.0)
        << "the interrupted save must not replace the checkpoint";
  }
}

}  // namespace
}  // namespace dg
