// Prometheus text exposition (format 0.0.4) of a daemon's counters and gauges, served at /metrics.
// Written by hand: the format is a few lines, and no Debian package offers a client library that
// fits an Asio daemon without its own HTTP server.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace vodgrid::net {

class metric_value {
 public:
  void inc(double by = 1) {
    double cur = v_.load(std::memory_order_relaxed);
    while (!v_.compare_exchange_weak(cur, cur + by, std::memory_order_relaxed)) {
    }
  }
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  double get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

// Thread-safe. Returned references stay valid for the registry's life.
class metrics_registry {
 public:
  // `labels` is the rendered label set without braces, e.g. `code="200"`, or empty.
  metric_value& counter(const std::string& name, const std::string& help,
                        const std::string& labels = {});
  metric_value& gauge(const std::string& name, const std::string& help,
                      const std::string& labels = {});
  // A gauge computed when scraped (free bytes, table sizes); called on the scraping thread.
  void gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn);
  std::string render() const;

 private:
  struct family {
    std::string type;
    std::string help;
    std::map<std::string, std::unique_ptr<metric_value>> series;
    std::function<double()> fn;
  };
  metric_value& get(const std::string& name, const std::string& type, const std::string& help,
                    const std::string& labels);
  mutable std::mutex mu_;
  std::map<std::string, family> families_;
};

}  // namespace vodgrid::net
