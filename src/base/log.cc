#include "base/log.h"

#include <fmt/chrono.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <mutex>
#include <string>

namespace vodgrid::log {

namespace {

std::mutex mu;
std::string process = "vodgrid";
spdlog::level::level_enum level = spdlog::level::info;

// One JSON object per line: a pattern cannot escape the message, so this formatter writes it.
class json_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& m, spdlog::memory_buf_t& dest) override {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(m.time.time_since_epoch());
    auto time =
        fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z",
                    fmt::gmtime(std::chrono::system_clock::to_time_t(m.time)), ms.count() % 1000);
    auto lvl = spdlog::level::to_string_view(m.level);
    auto line = json_line(time, std::string_view(lvl.data(), lvl.size()),
                          std::string_view(m.logger_name.data(), m.logger_name.size()),
                          std::string_view(m.payload.data(), m.payload.size()));
    line += '\n';
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

}  // namespace

std::string json_line(std::string_view time, std::string_view level, std::string_view logger,
                      std::string_view msg) {
  auto quoted = [](std::string_view s) { return boost::json::serialize(boost::json::string(s)); };
  return fmt::format(R"({{"time":{},"level":{},"logger":{},"msg":{}}})", quoted(time),
                     quoted(level), quoted(logger), quoted(msg));
}

void init(std::string_view lvl, std::string_view process_name, std::string_view format) {
  std::lock_guard lock(mu);
  level = spdlog::level::from_str(std::string(lvl));
  process = std::string(process_name);
  spdlog::set_level(level);
  if (format == "json") {
    spdlog::set_formatter(std::make_unique<json_formatter>());
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  }
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
