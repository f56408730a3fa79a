// Unit tests of the SHA-256 helper: published vectors, the hex form, incremental hashing.
#include <gtest/gtest.h>

#include <string>

#include "base/sha256.h"

namespace vodgrid {
namespace {

std::string hex_of(std::string_view data) {
  return to_hex(sha256(data));
}

TEST(Sha256, MatchesPublishedVectors) {
  EXPECT_EQ(hex_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex_of(std::string(1'000'000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, HexRoundTrips) {
  sha256_digest d = sha256("round trip");
  std::string hex = to_hex(d);
  ASSERT_EQ(hex.size(), 64u);
  auto back = parse_sha256_hex(hex);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, d);
}

TEST(Sha256, ParseAcceptsUppercase) {
  auto d = parse_sha256_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, sha256("abc"));
}

TEST(Sha256, ParseRejectsWrongLength) {
  std::string hex = to_hex(sha256("abc"));
  EXPECT_FALSE(parse_sha256_hex(""));
  EXPECT_FALSE(parse_sha256_hex(hex.substr(0, 63)));
  EXPECT_FALSE(parse_sha256_hex(hex + "0"));
  EXPECT_FALSE(parse_sha256_hex(hex + hex));
}

TEST(Sha256, ParseRejectsNonHex) {
  std::string hex = to_hex(sha256("abc"));
  for (char bad : {'g', 'G', ' ', '-', 'x', '\0', '/'}) {
    std::string s = hex;
    s[17] = bad;
    EXPECT_FALSE(parse_sha256_hex(s)) << "character " << int(bad);
  }
}

TEST(Sha256, IncrementalEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 300'000; ++i) {
    data.push_back(static_cast<char>((i * 7919) ^ (i >> 3)));
  }
  sha256_hasher h;
  size_t pos = 0;
  size_t piece = 1;
  while (pos < data.size()) {
    size_t n = std::min(piece, data.size() - pos);
    h.update(std::string_view(data).substr(pos, n));
    pos += n;
    piece = piece * 3 + 1;
  }
  EXPECT_EQ(h.finish(), sha256(data));
}

TEST(Sha256, HasherOfNothingIsEmptyDigestAndRestartsAfterFinish) {
  sha256_hasher h;
  EXPECT_EQ(h.finish(), sha256(""));
  h.update("ab");
  h.update("");
  h.update("c");
  EXPECT_EQ(h.finish(), sha256("abc"));
}

}  // namespace
}  // namespace vodgrid
