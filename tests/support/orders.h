// Test support for copies between engines: a slow HTTP source (support/test_http.py) and the
// engines' fetch orders. For tests that link vodgrid_api.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <boost/json/serialize.hpp>

#include "api/api.h"
#include "base/sha256.h"
#include "support/support.h"

namespace vodgrid::test {

// A source serving the files of `folder` over HTTP with test_http.py's `flags` (--rate BYTES/S,
// --delay-ms MS, --die-after BYTES), its requests logged.
struct slow_source {
  uint16_t port = free_port();
  temp_dir logs;
  child_process proc;
  slow_source(const std::filesystem::path& folder, std::vector<std::string> flags);
  std::string url(const std::string& file) const;
  int requests(const std::string& file) const;  // requests it received for `file`
};

// The body of an engine's POST /v1/orders/fetch: copy segment program/index, whose bytes are
// `data`, from `sources` (waiting for the whole copy before the reply, with `wait`).
inline std::string fetch_order(const std::string& program, uint32_t index, const std::string& data,
                               std::vector<std::string> sources, bool wait) {
  api::fetch_order o{{*program_id::parse(program), segment_index{index}},
                     sha256(data),
                     data.size(),
                     std::move(sources),
                     wait};
  return boost::json::serialize(api::to_json(o));
}

}  // namespace vodgrid::test
