#include "registry/discovery.h"

#include <fmt/format.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

namespace vodgrid::registry {

namespace json = boost::json;

namespace {

json::value group(const listen_address& at, std::string_view role, std::string_view station,
                  std::string_view daemon) {
  // An IPv6 address goes in brackets, as in a URL.
  bool v6 = at.host.find(':') != std::string::npos;
  auto target =
      v6 ? fmt::format("[{}]:{}", at.host, at.port) : fmt::format("{}:{}", at.host, at.port);
  json::array targets;
  targets.emplace_back(target);
  json::object labels;
  labels["role"] = role;
  labels["station"] = station;
  labels["daemon"] = daemon;
  json::object g;
  g["targets"] = std::move(targets);
  g["labels"] = std::move(labels);
  return g;
}

}  // namespace

json::value prometheus_targets(const grid_config& grid) {
  json::array out;
  if (grid.registry) {
    out.push_back(group(grid.registry->listen, "registry", "", "registry"));
  }
  if (grid.auth) {
    out.push_back(group(grid.auth->listen, "auth", "", "auth"));
  }
  if (grid.content) {
    out.push_back(group(grid.content->listen, "content", "", "content"));
  }
  for (auto& s : grid.stations) {
    auto station = s.name.str();
    out.push_back(group(s.director.listen, "director", station, station));
    for (auto& e : s.engines) {
      out.push_back(group(e.listen, "engine", station, e.name.str()));
    }
    if (s.supervisor.port != 0) {
      out.push_back(group(s.supervisor, "supervisor", station, station));
    }
  }
  return out;
}

}  // namespace vodgrid::registry
