// One named spdlog logger per module; messages carry their context (program, segment, engine,
// peer).
#pragma once

#include <memory>
#include <string_view>

#include <spdlog/spdlog.h>

namespace vodgrid::log {

// Sets the level of every logger ("trace".."off") and the format of every line: "text"
// ("TIME LEVEL [process.module] message") or "json" (one object per line: {"time","level",
// "logger","msg"}, the message escaped). Logs go to stderr.
void init(std::string_view level, std::string_view process_name, std::string_view format = "text");

// The JSON line of one message (without its newline), as init(..., "json") writes it.
std::string json_line(std::string_view time, std::string_view level, std::string_view logger,
                      std::string_view msg);
std::shared_ptr<spdlog::logger> get(std::string_view module);

}  // namespace vodgrid::log
