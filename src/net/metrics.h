// Prometheus text exposition (format 0.0.4) of a daemon's counters and gauges, served at /metrics.
// Written by hand: the format is a few lines, and no Debian package offers a client library that
// fits an Asio daemon without its own HTTP server.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/thread_slot.h"

namespace vodgrid::net {

// A counter or gauge, thread-safe. inc() adds to the calling thread's slot (base/thread_slot.h,
// modulo slot_count): loops 0-3 of a server count every request without writing a cache line
// another loop writes; with more loops, loop n shares a slot (still atomic) with loop n+4. get()
// adds the slots up when scraped. set() starts over: only for a series nobody inc()s (a gauge of
// one writer), since a set() on one thread and an inc() on another may lose either.
class metric_value {
 public:
  void inc(double by = 1) {
    auto& v = slots_[thread_slot() % slot_count].v;
    double cur = v.load(std::memory_order_relaxed);
    while (!v.compare_exchange_weak(cur, cur + by, std::memory_order_relaxed)) {
    }
  }
  void set(double v) {
    for (size_t i = 1; i < slot_count; ++i) {
      slots_[i].v.store(0, std::memory_order_relaxed);
    }
    slots_[0].v.store(v, std::memory_order_relaxed);
  }
  double get() const {
    double sum = 0;
    for (auto& s : slots_) {
      sum += s.v.load(std::memory_order_relaxed);
    }
    return sum;
  }

 private:
  static constexpr size_t slot_count = 4;
  struct alignas(64) slot {
    std::atomic<double> v{0};
  };
  std::array<slot, slot_count> slots_;
};

// A Prometheus histogram: counts of observations at or below each bound (rendered cumulative,
// with +Inf), their sum and their count. Lock-free: observe() is on every request's path, and
// counts in the calling thread's slot as metric_value does.
class histogram {
 public:
  explicit histogram(std::vector<double> bounds);
  void observe(double v);
  // Cumulative counts per bound then +Inf, the sum, and the count.
  std::vector<uint64_t> cumulative() const;
  double sum() const { return sum_.get(); }
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  static constexpr size_t slot_count = 4;
  std::vector<double> bounds_;
  struct alignas(64) line {
    std::atomic<uint64_t> c[8];
  };
  size_t lines_;                    // cache lines per slot: one count per bound, then +Inf
  std::unique_ptr<line[]> counts_;  // slot_count * lines_
  std::atomic<uint64_t>& count(size_t slot, size_t i) const {
    return counts_[slot * lines_ + i / 8].c[i % 8];
  }
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
