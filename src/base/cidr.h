// Address ranges in CIDR notation ("127.0.0.0/8", "::1/128"), for the operator's lists of who may
// read a daemon's /metrics ([grid] metrics_from, docs/configuration.md).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "base/result.h"

namespace vodgrid {

struct address_range {
  boost::asio::ip::address base;  // its host bits zero
  unsigned prefix = 0;  // bits of `base` that must match (≤ 32 for IPv4, ≤ 128 for IPv6)

  // "ADDRESS/PREFIX" (a bare address: the one address); errc::invalid_argument naming what is
  // wrong for anything else, or host bits set ("10.0.0.1/8": write 10.0.0.0/8).
  static result<address_range> parse(std::string_view text);
  // An IPv4-mapped IPv6 address ("::ffff:127.0.0.1", as a dual-stack socket reports IPv4 peers)
  // is taken as its IPv4 address.
  bool contains(const boost::asio::ip::address& a) const;
  std::string str() const;
};

result<std::vector<address_range>> parse_ranges(const std::vector<std::string>& texts);
// Whether any range of `ranges` contains `a`.
bool any_contains(const std::vector<address_range>& ranges, const boost::asio::ip::address& a);

}  // namespace vodgrid
