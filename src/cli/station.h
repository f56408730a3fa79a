// The station supervisor behind `vodgrid station` (claims 6-8): a station is a chassis whose
// blades, its director and its engines, run as child processes of one supervisor. A blade that
// exits, or that stops answering /healthz, is restarted with backoff, up to a crash-loop limit; the
// supervisor answers /healthz and /metrics on the station's `supervisor` address.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "base/config.h"
#include "base/result.h"

namespace vodgrid::cli {

struct supervisor_options {
  // Each blade's stdout and stderr are appended to <logs>/<name>.log; empty: a `logs` folder beside
  // the director's data_dir. Created if missing.
  std::filesystem::path logs;
  std::chrono::milliseconds health_interval{500};  // between two /healthz checks of a blade
  std::chrono::milliseconds health_timeout{400};   // deadline of one check (connect + reply)
  // A blade whose checks fail this long is SIGKILLed and restarted (a hung or stopped process).
  std::chrono::milliseconds unhealthy_after{2'000};
  // A (re)started blade that has not answered yet is not judged for this long: it may be opening
  // a large store.
  std::chrono::milliseconds start_grace{30'000};
  std::chrono::milliseconds backoff_initial{100};  // before the first restart; doubles each time
  std::chrono::milliseconds backoff_max{10'000};
  std::chrono::milliseconds backoff_reset{10'000};  // healthy this long: back to backoff_initial
  // More than `max_restarts` restarts of one blade within `restart_window`: the supervisor gives
  // up on that blade (reported failed) and keeps the others running.
  uint32_t max_restarts = 5;
  std::chrono::milliseconds restart_window{60'000};
  // At stop, SIGTERM then SIGKILL after this long: the engines first, then the director.
  std::chrono::milliseconds stop_grace{5'000};
};

// Owns the station's blades. Everything runs on the io_context's one thread.
class station_supervisor {
 public:
  // `config_file` is what each blade is started with (`vodgrid ROLE --config F --name N`).
  station_supervisor(boost::asio::io_context& io, grid_config grid,
                     std::filesystem::path config_file, station_id station,
                     supervisor_options opts = {});
  ~station_supervisor();
  station_supervisor(const station_supervisor&) = delete;
  station_supervisor& operator=(const station_supervisor&) = delete;

  // Creates the log folder, listens on the supervisor address (if its port is not 0) and starts
  // every blade. errc::not_found for a station not in the config.
  status start();
  // Stops supervising, then stops the engines and the director (SIGTERM, SIGKILL after
  // stop_grace) and the HTTP server. Completes when every blade has been reaped.
  boost::asio::awaitable<void> stop();
  uint16_t port() const;  // where /healthz and /metrics are served; 0 if nowhere

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace vodgrid::cli
