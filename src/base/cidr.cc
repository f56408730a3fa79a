// Address ranges: parsed by Boost.Asio's address parser, matched bit by bit over the bytes.
#include "base/cidr.h"

#include <fmt/format.h>

#include <charconv>

namespace vodgrid {

namespace ip = boost::asio::ip;

namespace {

ip::address unmapped(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  }
  return a;
}

template <class Bytes>
bool same_prefix(const Bytes& x, const Bytes& y, unsigned prefix) {
  for (size_t i = 0; i < x.size() && prefix > 0; ++i) {
    unsigned bits = prefix >= 8 ? 8 : prefix;
    auto mask = static_cast<uint8_t>(0xFF00u >> bits);
    if ((x[i] & mask) != (y[i] & mask)) {
      return false;
    }
    prefix -= bits;
  }
  return true;
}

bool host_bits_clear(const ip::address& a, unsigned prefix) {
  auto check = [prefix](const auto& bytes) {
    for (unsigned bit = prefix; bit < bytes.size() * 8; ++bit) {
      if (bytes[bit / 8] & (0x80 >> (bit % 8))) {
        return false;
      }
    }
    return true;
  };
  return a.is_v4() ? check(a.to_v4().to_bytes()) : check(a.to_v6().to_bytes());
}

}  // namespace

result<address_range> address_range::parse(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_error(errc::invalid_argument,
                      fmt::format("bad address range '{}': {} (write e.g. \"127.0.0.0/8\" or "
                                  "\"::1/128\")",
                                  text, why));
  };
  auto slash = text.find('/');
  boost::system::error_code ec;
  auto a = ip::make_address(std::string(text.substr(0, slash)), ec);
  if (ec) {
    return bad("not an IP address");
  }
  // An IPv4 range written as IPv6 (::ffff:10.0.0.0/104) counts its prefix over the 128 bits; it is
  // kept as the IPv4 range it means (10.0.0.0/8), which contains() compares addresses with.
  bool mapped = a.is_v6() && a.to_v6().is_v4_mapped();
  a = unmapped(a);
  unsigned max = a.is_v4() && !mapped ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    auto p = text.substr(slash + 1);
    auto [end, err] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (p.empty() || err != std::errc() || end != p.data() + p.size() || prefix > max) {
      return bad(fmt::format("the prefix length must be 0 to {}", max));
    }
  }
  if (mapped) {
    if (prefix < 96) {
      return bad("an IPv4-mapped range's prefix length must be 96 to 128 (its IPv4 part)");
    }
    prefix -= 96;
  }
  if (!host_bits_clear(a, prefix)) {
    return bad("host bits are set");
  }
  address_range r{a, prefix};
  return r;
}

bool address_range::contains(const ip::address& raw) const {
  auto a = unmapped(raw);
  if (a.is_v4() != base.is_v4()) {
    return false;
  }
  if (a.is_v4()) {
    return same_prefix(a.to_v4().to_bytes(), base.to_v4().to_bytes(), prefix);
  }
  return same_prefix(a.to_v6().to_bytes(), base.to_v6().to_bytes(), prefix);
}

std::string address_range::str() const {
  return fmt::format("{}/{}", base.to_string(), prefix);
}

result<std::vector<address_range>> parse_ranges(const std::vector<std::string>& texts) {
  std::vector<address_range> out;
  for (auto& t : texts) {
    auto r = address_range::parse(t);
    if (!r) {
      return r.err();
    }
    out.push_back(*r);
  }
  return out;
}

bool any_contains(const std::vector<address_range>& ranges, const ip::address& a) {
  for (auto& r : ranges) {
    if (r.contains(a)) {
      return true;
    }
  }
  return false;
}

}  // namespace vodgrid
