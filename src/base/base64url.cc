// Written here rather than taken from a library: libsodium has it (and was linked for nothing else
// by the daemons that only verify tokens), OpenSSL's EVP_EncodeBlock knows only the padded standard
// alphabet and its decoder skips whitespace, and Boost's is in a detail namespace. Each character
// is computed with masks, never looked up by a secret-dependent index (libsodium's method).
#include "base/base64url.h"

#include <cstdint>

namespace vodgrid {

namespace {

// All ones when a < b, else zero; no branch.
constexpr uint32_t less_mask(uint32_t a, uint32_t b) {
  return 0u - ((a - b) >> 31);
}

// 0..63 to its character of the url-safe alphabet.
constexpr char to_char(uint32_t x) {
  uint32_t c = x + 'A';                         // 0..25
  c += (x + 'a' - 26 - c) & ~less_mask(x, 26);  // 26..51
  c += (x + '0' - 52 - c) & ~less_mask(x, 52);  // 52..61
  c += ('-' - c) & ~less_mask(x, 62);           // 62
  c += ('_' - c) & ~less_mask(x, 63);           // 63
  return static_cast<char>(c);
}

// A character to 0..63, or a value with bit 8 set when it is not in the alphabet.
constexpr uint32_t from_char(unsigned char ch) {
  uint32_t c = ch;
  auto in = [c](uint32_t lo, uint32_t hi) { return ~less_mask(c, lo) & less_mask(c, hi + 1); };
  uint32_t x = 0x100;
  x ^= (x ^ (c - 'A')) & in('A', 'Z');
  x ^= (x ^ (c - 'a' + 26)) & in('a', 'z');
  x ^= (x ^ (c - '0' + 52)) & in('0', '9');
  x ^= (x ^ 62) & in('-', '-');
  x ^= (x ^ 63) & in('_', '_');
  return x;
}

static_assert(to_char(0) == 'A' && to_char(25) == 'Z' && to_char(26) == 'a' && to_char(51) == 'z' &&
              to_char(52) == '0' && to_char(61) == '9' && to_char(62) == '-' && to_char(63) == '_');
static_assert(from_char('A') == 0 && from_char('z') == 51 && from_char('9') == 61 &&
              from_char('-') == 62 && from_char('_') == 63 && from_char('=') >= 0x100 &&
              from_char('+') >= 0x100 && from_char('/') >= 0x100 && from_char(' ') >= 0x100);

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(to_char((acc >> bits) & 63));
    }
  }
  if (bits > 0) {
    out.push_back(to_char((acc << (6 - bits)) & 63));
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  if (text.size() % 4 == 1) {
    return std::nullopt;  // no byte count encodes to this length
  }
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0, invalid = 0;
  int bits = 0;
  for (unsigned char ch : text) {
    uint32_t x = from_char(ch);
    invalid |= x;
    acc = (acc << 6) | (x & 63);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Canonical only: the bits left over from the last character must be zero.
  invalid |= (acc & ((1u << bits) - 1)) != 0 ? 0x100 : 0;
  if (invalid & 0x100) {
    return std::nullopt;
  }
  return out;
}

}  // namespace vodgrid
