// Child processes: the local grid launcher runs each daemon as its own process (so that a test or
// an operator can kill one), and tests drive the real `vodgrid` binary the same way.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

namespace vodgrid {

class child_process {
 public:
  child_process() = default;
  // Starts argv[0] (a path) with argv; stdout and stderr go to `log_file` when given (appended),
  // else are inherited. The child dies with SIGTERM if this process dies (PR_SET_PDEATHSIG).
  static result<child_process> spawn(const std::vector<std::string>& argv,
                                     const std::filesystem::path& log_file = {});
  child_process(child_process&& o) noexcept;
  child_process& operator=(child_process&& o) noexcept;
  child_process(const child_process&) = delete;
  ~child_process();  // SIGKILLs and reaps a child still running

  pid_t pid() const { return pid_; }
  bool running();  // reaps it if it has exited
  void signal(int sig) const;
  // Waits for exit; returns the exit status (128+signal if killed), nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // SIGTERM, then SIGKILL after `grace`; returns the exit status.
  int stop(std::chrono::milliseconds grace);
  // Once it has exited (running() saw it): its exit status as wait() returns it; nullopt before.
  std::optional<int> exit_status() const { return status_; }
  // Once it has exited: the signal that ended it, or 0 if it exited by itself (then the status
  // is its exit code, which may exceed 128 without a signal).
  int term_signal() const { return signal_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  int signal_ = 0;
};

// The absolute path of the running executable.
std::filesystem::path self_executable();

}  // namespace vodgrid
