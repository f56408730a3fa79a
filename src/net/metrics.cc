#include "net/metrics.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>

namespace vodgrid::net {

histogram::histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      lines_((bounds_.size() + 1 + 7) / 8),
      counts_(std::make_unique<line[]>(slot_count * lines_)) {}

void histogram::observe(double v) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  count(thread_slot() % slot_count, i).fetch_add(1, std::memory_order_relaxed);
  sum_.inc(v);
}

std::vector<uint64_t> histogram::cumulative() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t run = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    for (size_t s = 0; s < slot_count; ++s) {
      run += count(s, i).load(std::memory_order_relaxed);
    }
    out[i] = run;
  }
  return out;
}

std::vector<double> latency_buckets() {
  return {0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

namespace {

// Joins a series' labels and one more, e.g. `route="/x"` and `le="0.5"`.
std::string with_label(const std::string& labels, const std::string& more) {
  return labels.empty() ? more : labels + "," + more;
}

void render_histogram(std::string& out, const std::string& name, const std::string& labels,
                      const histogram& h) {
  auto counts = h.cumulative();
  for (size_t i = 0; i < counts.size(); ++i) {
    auto le = i < h.bounds().size() ? fmt::format("le=\"{}\"", h.bounds()[i]) : "le=\"+Inf\"";
    out += fmt::format("{}_bucket{{{}}} {}\n", name, with_label(labels, le), counts[i]);
  }
  auto braces = labels.empty() ? std::string() : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, h.sum(), name, braces,
                     counts.back());
}

// The process's own CPU time (user + system, every thread), under the name Prometheus's client
// libraries give it, in every daemon's /metrics: a load generator (vodgrid play), a dashboard or
// an alert reads a daemon's CPU from there.
void process_metrics(std::string& out) {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  out += fmt::format(
      "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
      "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n",
      s(r.ru_utime) + s(r.ru_stime));
}

}  // namespace

metric_value& metrics_registry::get(const std::string& name, const std::string& type,
                                    const std::string& help, const std::string& labels) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  if (f.type.empty()) {
    f.type = type;
    f.help = help;
  }
  auto& s = f.series[labels];
  if (!s) {
    s = std::make_unique<metric_value>();
  }
  return *s;
}

metric_value& metrics_registry::counter(const std::string& name, const std::string& help,
                                        const std::string& labels) {
  return get(name, "counter", help, labels);
}

metric_value& metrics_registry::gauge(const std::string& name, const std::string& help,
                                      const std::string& labels) {
  return get(name, "gauge", help, labels);
}

histogram& metrics_registry::histogram_of(const std::string& name, const std::string& help,
                                          const std::string& labels, std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  if (f.type.empty()) {
    f.type = "histogram";
    f.help = help;
  }
  auto& h = f.histograms[labels];
  if (!h) {
    h = std::make_unique<histogram>(bounds.empty() ? latency_buckets() : std::move(bounds));
  }
  return *h;
}

void metrics_registry::gauge_fn(const std::string& name, const std::string& help,
                                std::function<double()> fn) {
  gauges_fn(name, help, [fn = std::move(fn)] { return labelled_values{{std::string(), fn()}}; });
}

void metrics_registry::gauges_fn(const std::string& name, const std::string& help,
                                 std::function<labelled_values()> fn) {
  computed(name, "gauge", help, std::move(fn));
}

void metrics_registry::counters_fn(const std::string& name, const std::string& help,
                                   std::function<labelled_values()> fn) {
  computed(name, "counter", help, std::move(fn));
}

void metrics_registry::computed(const std::string& name, const char* type, const std::string& help,
                                std::function<labelled_values()> fn) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  f.type = type;
  f.help = help;
  f.fn = std::move(fn);
}

std::string label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string metrics_registry::render() const {
  struct computed_family {
    std::string name, type, help;
    std::function<labelled_values()> fn;
  };
  std::vector<computed_family> fns;
  std::string out;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, f] : families_) {
      if (f.fn) {
        fns.push_back({name, f.type, f.help, f.fn});
        continue;
      }
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, f.help, name, f.type);
      for (auto& [labels, v] : f.series) {
        if (labels.empty()) {
          out += fmt::format("{} {}\n", name, v->get());
        } else {
          out += fmt::format("{}{{{}}} {}\n", name, labels, v->get());
        }
      }
      for (auto& [labels, h] : f.histograms) {
        render_histogram(out, name, labels, *h);
      }
    }
  }
  for (auto& c : fns) {  // outside the lock: fn may take the caller's own locks
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n", c.name, c.help, c.type);
    for (auto& [labels, v] : c.fn()) {
      if (labels.empty()) {
        out += fmt::format("{} {}\n", c.name, v);
      } else {
        out += fmt::format("{}{{{}}} {}\n", c.name, labels, v);
      }
    }
  }
  process_metrics(out);
  return out;
}

}  // namespace vodgrid::net
