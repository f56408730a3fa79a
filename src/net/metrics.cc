#include "net/metrics.h"

#include <fmt/format.h>

namespace vodgrid::net {

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

void metrics_registry::gauge_fn(const std::string& name, const std::string& help,
                                std::function<double()> fn) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  f.type = "gauge";
  f.help = help;
  f.fn = std::move(fn);
}

std::string metrics_registry::render() const {
  struct computed {
    std::string name, help;
    std::function<double()> fn;
  };
  std::vector<computed> fns;
  std::string out;
  {
    std::lock_guard lock(mu_);
    for (auto& [name, f] : families_) {
      if (f.fn) {
        fns.push_back({name, f.help, f.fn});
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
    }
  }
  for (auto& c : fns) {  // outside the lock: fn may take the caller's own locks
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", c.name, c.help, c.fn());
  }
  return out;
}

}  // namespace vodgrid::net
