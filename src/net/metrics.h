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
#include <string_view>
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

// A Prometheus histogram: counts of observations at or below each bound (rendered cumulative,
// with +Inf), their sum and their count. Lock-free: observe() is on every request's path.
class histogram {
 public:
  explicit histogram(std::vector<double> bounds);
  void observe(double v);
  // Cumulative counts per bound then +Inf, the sum, and the count.
  std::vector<uint64_t> cumulative() const;
  double sum() const { return sum_.get(); }
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // one per bound, then +Inf
  metric_value sum_;
};

// A label value as the exposition format wants it (backslash, quote and newline escaped).
std::string label_value(std::string_view v);

// Seconds, from a quarter of a millisecond (a redirect on loopback) to ten seconds (a segment
// sent to a slow console).
std::vector<double> latency_buckets();

// Thread-safe. Returned references stay valid for the registry's life.
class metrics_registry {
 public:
  // `labels` is the rendered label set without braces, e.g. `code="200"`, or empty.
  metric_value& counter(const std::string& name, const std::string& help,
                        const std::string& labels = {});
  metric_value& gauge(const std::string& name, const std::string& help,
                      const std::string& labels = {});
  histogram& histogram_of(const std::string& name, const std::string& help,
                          const std::string& labels = {}, std::vector<double> bounds = {});
  // A gauge computed when scraped (free bytes, table sizes); called on the scraping thread.
  void gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn);
  // Gauges of several series computed when scraped: each (labels, value), e.g. per directory.
  using labelled_values = std::vector<std::pair<std::string, double>>;
  void gauges_fn(const std::string& name, const std::string& help,
                 std::function<labelled_values()> fn);
  // A counter kept elsewhere (another component's tally), read when scraped.
  void counters_fn(const std::string& name, const std::string& help,
                   std::function<labelled_values()> fn);
  std::string render() const;

 private:
  struct family {
    std::string type;
    std::string help;
    std::map<std::string, std::unique_ptr<metric_value>> series;
    std::map<std::string, std::unique_ptr<histogram>> histograms;
    std::function<labelled_values()> fn;
  };
  metric_value& get(const std::string& name, const std::string& type, const std::string& help,
                    const std::string& labels);
  void computed(const std::string& name, const char* type, const std::string& help,
                std::function<labelled_values()> fn);
  mutable std::mutex mu_;
  std::map<std::string, family> families_;
};

}  // namespace vodgrid::net
