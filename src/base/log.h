// One named spdlog logger per module; messages carry their context (program, segment, engine,
// peer).
#pragma once

#include <memory>
#include <string_view>

#include <spdlog/spdlog.h>

namespace vodgrid::log {

// Sets the level of every logger ("trace".."off"); logs go to stderr.
void init(std::string_view level, std::string_view process_name);
std::shared_ptr<spdlog::logger> get(std::string_view module);

}  // namespace vodgrid::log
