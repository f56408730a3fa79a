// Every JSON decoder of the daemons' API (src/api/api.h): the first byte picks the type, the rest
// is the body. A value that decodes must encode and decode again to the same JSON.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <boost/json/serialize.hpp>

#include "api/api.h"

namespace api = vodgrid::api;

namespace {

template <class T>
void round_trip(std::string_view body, bool encodable) {
  auto v = api::decode<T>(body);
  if (!v || !encodable) {
    return;
  }
  if constexpr (requires(const T& t) { api::to_json(t); }) {
    auto text = boost::json::serialize(api::to_json(*v));
    auto again = api::decode<T>(text);
    if (!again || boost::json::serialize(api::to_json(*again)) != text) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 14) {
    case 0:
      round_trip<api::heartbeat>(body, true);
      break;
    case 1:
      round_trip<api::heartbeat_reply>(body, true);
      break;
    case 2:
      round_trip<api::program_manifest>(body, true);
      break;
    case 3:
      round_trip<api::placement>(body, true);
      break;
    case 4:
      round_trip<api::fetch_order>(body, true);
      break;
    case 5:
      round_trip<api::preload_order>(body, true);
      break;
    case 6:
      round_trip<api::availability_change>(body, false);
      break;
    case 7:
      round_trip<api::station_registration>(body, true);
      break;
    case 8:
      round_trip<api::station_report>(body, true);
      break;
    case 9:
      round_trip<api::distribution>(body, true);
      break;
    case 10:
      round_trip<std::vector<api::source>>(body, false);
      break;
    case 11:
      // Not re-encoded: its cost inputs have no bound, and Boost.JSON 1.81 reads a large exponent
      // (5e90) imprecisely, so the text need not come back the same.
      round_trip<api::source_list>(body, false);
      break;
    case 12:
      round_trip<api::holder_reply>(body, true);
      break;
    case 13:
      round_trip<api::ingest_request>(body, true);
      break;
  }
  return 0;
}
