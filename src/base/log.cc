#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>
#include <string>

namespace vodgrid::log {

namespace {
std::mutex mu;
std::string process = "vodgrid";
spdlog::level::level_enum level = spdlog::level::info;
}  // namespace

void init(std::string_view lvl, std::string_view process_name) {
  std::lock_guard lock(mu);
  level = spdlog::level::from_str(std::string(lvl));
  process = std::string(process_name);
  spdlog::set_level(level);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
}

std::shared_ptr<spdlog::logger> get(std::string_view module) {
  std::lock_guard lock(mu);
  std::string name = process + "." + std::string(module);
  if (auto l = spdlog::get(name)) {
    return l;
  }
  auto l = spdlog::stderr_color_mt(name);
  l->set_level(level);
  return l;
}

}  // namespace vodgrid::log
