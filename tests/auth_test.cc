// Tokens, the keyring's rotation, the verifier's checks and cache, URL signatures and password
// hashing: forged, expired, tampered, wrong-kind, wrong-program and wrong-address tokens are
// refused with the right reason.
#include <atomic>
#include <limits>
#include <thread>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/hmac.h"
#include "auth/keys.h"
#include "auth/password.h"
#include "auth/token.h"
#include "auth/url_signer.h"
#include "auth/verifier.h"

namespace vodgrid::auth {
namespace {

constexpr int64_t t0 = 1'800'000'000;

claims viewer_claims(std::vector<std::string> programs = {}) {
  claims c;
  c.issuer = "http://127.0.0.1:8701";
  c.subject = "demo";
  c.kind = token_kind::viewer;
  c.all_programs = programs.empty();
  for (auto& p : programs) {
    c.programs.push_back(*program_id::parse(p));
  }
  c.issued_at = t0;
  c.expires_at = t0 + 3600;
  return c;
}

requirement need(token_kind k, std::string program = {}, std::string address = {}) {
  requirement r;
  r.kind = k;
  if (!program.empty()) {
    r.program = program_id::parse(program);
  }
  r.address = std::move(address);
  return r;
}

struct AuthTest : ::testing::Test {
  signing_key key = signing_key::generate("k1");
  token_verifier v;
  void SetUp() override { v.set_keys({key.public_part()}); }
};

TEST_F(AuthTest, IssuedTokenParsesBackToItsClaims) {
  auto c = viewer_claims({"news", "film-2"});
  c.address = "10.1.2.3";
  auto t = parse_token(key.issue(c));
  ASSERT_TRUE(t) << t.err().detail;
  EXPECT_EQ(t->kid, "k1");
  EXPECT_EQ(t->body, c);
}

TEST_F(AuthTest, GoodTokenPasses) {
  auto out = v.verify(key.issue(viewer_claims()), need(token_kind::viewer, "news"), t0 + 10);
  ASSERT_TRUE(out) << out.detail;
  EXPECT_EQ(out.ok->subject, "demo");
}

TEST_F(AuthTest, MissingTokenIsUnauthorized) {
  auto out = v.verify("", need(token_kind::viewer), t0);
  EXPECT_EQ(out.why, token_error::missing);
  EXPECT_EQ(out.as_error().code, errc::unauthorized);
}

TEST_F(AuthTest, ForgedTokenOfAnotherKeyWithTheSameKidIsRefused) {
  auto forger = signing_key::generate("k1");
  auto out = v.verify(forger.issue(viewer_claims()), need(token_kind::viewer), t0 + 1);
  EXPECT_EQ(out.why, token_error::bad_signature);
  EXPECT_EQ(out.as_error().code, errc::forbidden);
}

TEST_F(AuthTest, TokenOfAnUnknownKeyIsRefused) {
  auto other = signing_key::generate("k2");
  auto out = v.verify(other.issue(viewer_claims()), need(token_kind::viewer), t0 + 1);
  EXPECT_EQ(out.why, token_error::unknown_key);
}

TEST_F(AuthTest, ExpiredTokenIsRefused) {
  auto text = key.issue(viewer_claims());
  EXPECT_TRUE(v.verify(text, need(token_kind::viewer), t0 + 3599));
  auto out = v.verify(text, need(token_kind::viewer), t0 + 3600);  // also once cached
  EXPECT_EQ(out.why, token_error::expired);
  EXPECT_EQ(out.as_error().code, errc::forbidden);
}

TEST_F(AuthTest, TamperedPayloadIsRefused) {
  auto text = key.issue(viewer_claims({"news"}));
  auto dot1 = text.find('.');
  auto dot2 = text.find('.', dot1 + 1);
  auto c = viewer_claims();  // widen the entitlement to every program
  std::string forged_input = signing_input("k1", c);
  std::string forged = forged_input + text.substr(dot2);
  EXPECT_EQ(v.verify(forged, need(token_kind::viewer, "film"), t0 + 1).why,
            token_error::bad_signature);
  // One flipped bit anywhere in the signature.
  std::string flipped = text;
  flipped[dot2 + 5] = flipped[dot2 + 5] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(v.verify(flipped, need(token_kind::viewer, "news"), t0 + 1));
}

TEST_F(AuthTest, WrongKindIsRefused) {
  auto text = key.issue(viewer_claims());
  auto out = v.verify(text, need(token_kind::operator_), t0 + 1);
  EXPECT_EQ(out.why, token_error::wrong_kind);
  EXPECT_EQ(v.verify(text, need(token_kind::engine), t0 + 1).why, token_error::wrong_kind);
}

TEST_F(AuthTest, ProgramOutsideTheEntitlementIsRefused) {
  auto text = key.issue(viewer_claims({"news"}));
  EXPECT_TRUE(v.verify(text, need(token_kind::viewer, "news"), t0 + 1));
  EXPECT_EQ(v.verify(text, need(token_kind::viewer, "film"), t0 + 1).why,
            token_error::not_entitled);
}

TEST_F(AuthTest, TokenBoundToAnAddressIsRefusedFromAnother) {
  auto c = viewer_claims();
  c.address = "127.0.0.1";
  auto text = key.issue(c);
  EXPECT_TRUE(v.verify(text, need(token_kind::viewer, "", "127.0.0.1"), t0 + 1));
  EXPECT_TRUE(v.verify(text, need(token_kind::viewer, "", "::ffff:127.0.0.1"), t0 + 1));
  EXPECT_EQ(v.verify(text, need(token_kind::viewer, "", "127.0.0.2"), t0 + 1).why,
            token_error::wrong_address);
}

TEST_F(AuthTest, AllowsOnlyACachedTokenThatMeetsTheRequirement) {
  auto c = viewer_claims({"news"});
  c.address = "127.0.0.1";
  auto text = key.issue(c);
  auto news = *program_id::parse("news");
  auto film = *program_id::parse("film");
  auto ip = [](const char* a) { return boost::asio::ip::make_address(a); };
  EXPECT_FALSE(v.allows(text, token_kind::viewer, &news, ip("127.0.0.1"), t0 + 1));  // not cached
  ASSERT_TRUE(v.verify(text, need(token_kind::viewer, "news", "127.0.0.1"), t0 + 1));
  EXPECT_TRUE(v.allows(text, token_kind::viewer, &news, ip("127.0.0.1"), t0 + 1));
  EXPECT_TRUE(v.allows(text, token_kind::viewer, nullptr, ip("::ffff:127.0.0.1"), t0 + 1));
  EXPECT_FALSE(v.allows(text, token_kind::viewer, &news, ip("127.0.0.2"), t0 + 1));
  EXPECT_FALSE(v.allows(text, token_kind::viewer, &news, ip("::1"), t0 + 1));
  EXPECT_FALSE(v.allows(text, token_kind::operator_, &news, ip("127.0.0.1"), t0 + 1));
  EXPECT_FALSE(v.allows(text, token_kind::viewer, &film, ip("127.0.0.1"), t0 + 1));
  EXPECT_FALSE(v.allows(text, token_kind::viewer, &news, ip("127.0.0.1"), t0 + 3600));
  EXPECT_FALSE(v.allows(text + "x", token_kind::viewer, &news, ip("127.0.0.1"), t0 + 1));

  auto anywhere = key.issue(viewer_claims());
  ASSERT_TRUE(v.verify(anywhere, need(token_kind::viewer), t0 + 1));
  EXPECT_TRUE(v.allows(anywhere, token_kind::viewer, &film, ip("10.1.2.3"), t0 + 1));
  EXPECT_TRUE(v.allows(anywhere, token_kind::viewer, &film, ip("2001:db8::1"), t0 + 1));
}

TEST_F(AuthTest, VerifiedTokensAreCachedAndForgottenWhenKeysChange) {
  auto text = key.issue(viewer_claims());
  ASSERT_TRUE(v.verify(text, need(token_kind::viewer), t0 + 1));
  EXPECT_EQ(v.cached(), 1u);
  v.set_keys({});
  EXPECT_EQ(v.cached(), 0u);
  EXPECT_EQ(v.verify(text, need(token_kind::viewer), t0 + 1).why, token_error::unknown_key);
}

// allows() from two threads at once (issue 16): each gets every answer right, and once the keys
// change no thread is allowed a token of the retired key, though every thread met them all.
TEST_F(AuthTest, AllowsFromTwoThreadsAtOnceAndForgetsWhenKeysChange) {
  auto news = *program_id::parse("news");
  auto film = *program_id::parse("film");
  auto ip = boost::asio::ip::make_address("127.0.0.1");
  std::vector<std::string> tokens;
  for (int i = 0; i < 8; ++i) {  // several tokens, so that the threads' copies are replaced too
    auto c = viewer_claims({"news"});
    c.issued_at = t0 + i;
    tokens.push_back(key.issue(c));
    ASSERT_TRUE(v.verify(tokens.back(), need(token_kind::viewer, "news"), t0 + 60));
  }
  std::atomic<int> allowed{0};
  std::atomic<int> wrong{0};
  auto ask = [&] {
    for (int round = 0; round < 2000; ++round) {
      for (auto& t : tokens) {
        allowed += v.allows(t, token_kind::viewer, &news, ip, t0 + 60) ? 1 : 0;
        wrong += v.allows(t, token_kind::viewer, &film, ip, t0 + 60) ? 1 : 0;
      }
    }
  };
  std::thread a(ask);
  std::thread b(ask);
  a.join();
  b.join();
  EXPECT_EQ(allowed.load(), 2 * 2000 * 8);
  EXPECT_EQ(wrong.load(), 0);

  ASSERT_TRUE(v.allows(tokens[0], token_kind::viewer, &news, ip, t0 + 60));
  auto other = signing_key::generate("k2");
  v.set_keys({other.public_part()});  // k1 retired: its tokens are refused, even remembered
  EXPECT_EQ(v.cached(), 0u);
  auto still_allowed = [&] {
    int n = 0;
    for (auto& t : tokens) {
      n += v.allows(t, token_kind::viewer, &news, ip, t0 + 60) ? 1 : 0;
    }
    return n;
  };
  EXPECT_EQ(still_allowed(), 0);
  int on_a = -1;
  int on_b = -1;
  std::thread c([&] { on_a = still_allowed(); });
  std::thread d([&] { on_b = still_allowed(); });
  c.join();
  d.join();
  EXPECT_EQ(on_a, 0);
  EXPECT_EQ(on_b, 0);
  // Another verifier's remembered tokens are its own, though a thread has met the same text.
  token_verifier fresh;
  fresh.set_keys({key.public_part()});
  EXPECT_FALSE(fresh.allows(tokens[2], token_kind::viewer, &news, ip, t0 + 60));
}

// Many consoles per loop (issue 16): two threads ask about 600 distinct tokens, interleaved, and
// every one is allowed where it is entitled and refused elsewhere, all remembered at once.
TEST_F(AuthTest, AllowsManyDistinctTokensFromTwoThreads) {
  auto news = *program_id::parse("news");
  auto film = *program_id::parse("film");
  auto ip = boost::asio::ip::make_address("127.0.0.1");
  constexpr int count = 600;
  std::vector<std::string> tokens;
  for (int i = 0; i < count; ++i) {
    auto c = viewer_claims({"news"});
    c.issued_at = t0 + i % 60;
    c.subject = "viewer" + std::to_string(i);
    tokens.push_back(key.issue(c));
    ASSERT_TRUE(v.verify(tokens.back(), need(token_kind::viewer, "news"), t0 + 60));
  }
  EXPECT_EQ(v.cached(), static_cast<size_t>(count));
  std::atomic<int> allowed{0};
  std::atomic<int> wrong{0};
  auto ask = [&](int start) {
    for (int round = 0; round < 20; ++round) {
      for (int i = 0; i < count; ++i) {
        auto& t = tokens[(start + i) % count];
        allowed += v.allows(t, token_kind::viewer, &news, ip, t0 + 60) ? 1 : 0;
        wrong += v.allows(t, token_kind::viewer, &film, ip, t0 + 60) ? 1 : 0;
        wrong += v.allows(t, token_kind::operator_, nullptr, ip, t0 + 60) ? 1 : 0;
      }
    }
  };
  std::thread a(ask, 0);
  std::thread b(ask, count / 2);
  a.join();
  b.join();
  EXPECT_EQ(allowed.load(), 2 * 20 * count);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(v.cached(), static_cast<size_t>(count));
}

TEST_F(AuthTest, CacheStaysBounded) {
  token_verifier small(verifier_options{.cache_entries = 8});
  small.set_keys({key.public_part()});
  for (int i = 0; i < 50; ++i) {
    auto c = viewer_claims();
    c.issued_at = t0 + i;
    ASSERT_TRUE(small.verify(key.issue(c), need(token_kind::viewer), t0 + 60));
    EXPECT_LE(small.cached(), 8u);
  }
}

TEST(TokenParse, RefusesMalformedText) {
  auto key = signing_key::generate("k1");
  std::string good = key.issue(viewer_claims());
  for (std::string bad :
       {std::string(), std::string("."), std::string(".."), std::string("a.b.c"), good + ".",
        good + "=", "x" + good, std::string(5000, 'a'), good.substr(0, good.size() - 1),
        std::string("eyJ9.eyJ9.AAAA"), std::string("\0\0", 2)}) {
    EXPECT_FALSE(parse_token(bad)) << bad;
  }
}

TEST(TokenParse, RefusesWrongAlgorithmAndUnknownFields) {
  auto key = signing_key::generate("k1");
  std::string sig = "." + base64url_encode(std::string(64, 'x'));
  std::string payload = base64url_encode(
      R"({"iss":"i","sub":"demo","kind":"viewer","ent":"*","iat":1800000000,"exp":1800003600})");
  auto header = [](std::string h) { return base64url_encode(h); };
  EXPECT_TRUE(parse_token(header(R"({"alg":"EdDSA","kid":"k1"})") + "." + payload + sig));
  EXPECT_FALSE(parse_token(header(R"({"alg":"none","kid":"k1"})") + "." + payload + sig));
  EXPECT_FALSE(parse_token(header(R"({"alg":"HS256","kid":"k1"})") + "." + payload + sig));
  EXPECT_FALSE(parse_token(header(R"({"alg":"EdDSA","kid":"../k"})") + "." + payload + sig));
  EXPECT_FALSE(parse_token(header(R"({"alg":"EdDSA","kid":"k1","x":1})") + "." + payload + sig));
  std::string extra = base64url_encode(
      R"({"iss":"i","sub":"demo","kind":"viewer","ent":"*","iat":1800000000,"exp":1800003600,"admin":true})");
  EXPECT_FALSE(parse_token(header(R"({"alg":"EdDSA","kid":"k1"})") + "." + extra + sig));
  std::string kind = base64url_encode(
      R"({"iss":"i","sub":"demo","kind":"root","ent":"*","iat":1800000000,"exp":1800003600})");
  EXPECT_FALSE(parse_token(header(R"({"alg":"EdDSA","kid":"k1"})") + "." + kind + sig));
  std::string forever = base64url_encode(
      R"({"iss":"i","sub":"demo","kind":"viewer","ent":"*","iat":1800000000,"exp":9000000000})");
  EXPECT_FALSE(parse_token(header(R"({"alg":"EdDSA","kid":"k1"})") + "." + forever + sig));
}

TEST(Base64url, RoundTripsAndRefusesNonCanonicalText) {
  for (std::string s : {"", "a", "ab", "abc", "abcd", "\xff\xfe\x00"}) {
    auto e = base64url_encode(s);
    EXPECT_EQ(base64url_decode(e), s);
  }
  EXPECT_FALSE(base64url_decode("YQ=="));  // padding
  EXPECT_FALSE(base64url_decode("YR"));    // stray bits: "YQ" is canonical
  EXPECT_FALSE(base64url_decode("Y Q"));
  EXPECT_FALSE(base64url_decode("a+b/"));  // the other alphabet
}

TEST(Keyring, SeveralKeysVerifyDuringRotationAndARetiredKeyIsRefused) {
  keyring ring(3600);
  ring.rotate(t0);
  auto old_kid = ring.signer().kid();
  auto old_token = ring.signer().issue(viewer_claims());
  ring.rotate(t0 + 100);
  auto new_token = ring.signer().issue(viewer_claims());
  EXPECT_NE(ring.signer().kid(), old_kid);

  token_verifier v;
  v.set_keys(ring.published());
  EXPECT_EQ(ring.published().size(), 2u);
  EXPECT_TRUE(v.verify(old_token, need(token_kind::viewer), t0 + 200));
  EXPECT_TRUE(v.verify(new_token, need(token_kind::viewer), t0 + 200));

  EXPECT_TRUE(ring.retire(t0 + 100 + 3599).empty());
  auto gone = ring.retire(t0 + 100 + 3600);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0], old_kid);
  v.set_keys(ring.published());
  EXPECT_EQ(v.verify(old_token, need(token_kind::viewer), t0 + 200).why, token_error::unknown_key);
  EXPECT_TRUE(v.verify(new_token, need(token_kind::viewer), t0 + 200));
}

TEST(Keyring, ReloadsFromItsEntries) {
  keyring ring(3600);
  ring.rotate(t0);
  ring.rotate(t0 + 10);
  auto token = ring.signer().issue(viewer_claims());
  keyring again(3600);
  ASSERT_TRUE(again.load(ring.entries()));
  EXPECT_EQ(again.signer().kid(), ring.signer().kid());
  EXPECT_EQ(again.published(), ring.published());
  EXPECT_EQ(again.signer().issue(viewer_claims()), token);  // Ed25519 is deterministic
  EXPECT_FALSE(again.load({key_entry{"k", "short", t0, 0}}));
}

TEST(Hmac, EqualsOpenSslOneShotHmac) {
  std::vector<std::string> keys = {"",
                                   "k",
                                   std::string(32, 'k'),
                                   std::string(63, 'x'),
                                   std::string(64, 'y'),
                                   std::string(65, 'z'),
                                   std::string(200, '\xa5')};
  std::vector<std::string> messages = {"",
                                       "a",
                                       "/v1/segments/news/3.ts\n1800000030",
                                       std::string(55, 'm'),
                                       std::string(56, 'm'),
                                       std::string(64, 'm'),
                                       std::string(1000, '\0')};
  for (auto& key : keys) {
    hmac_sha256 h(key);
    for (auto& msg : messages) {
      unsigned char want[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      ASSERT_NE(HMAC(EVP_sha256(), key.data(), int(key.size()),
                     reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), want, &len),
                nullptr);
      ASSERT_EQ(len, hmac_sha256::digest_bytes);
      auto got = h.mac({msg});
      EXPECT_EQ(std::string(got.begin(), got.end()), std::string(want, want + len))
          << "key of " << key.size() << " bytes, message of " << msg.size();
      // The same message in parts, and the state left by one MAC does not leak into the next.
      std::string_view v(msg);
      auto split = h.mac({v.substr(0, v.size() / 3), "", v.substr(v.size() / 3)});
      EXPECT_EQ(split, got);
    }
  }
}

TEST(UrlSigner, SignatureIsHmacSha256OfPathAndExpiry) {
  // base64url(HMAC-SHA256("k" x 32, "/v1/segments/news/3.ts\n1800000030")), computed apart.
  url_signer s(std::string(32, 'k'));
  EXPECT_EQ(s.sign_query("/v1/segments/news/3.ts", t0 + 30),
            "vg_exp=1800000030&vg_sig=oSYO5bh5iDlCk_Q1rCyUrQ42tT-cPmYTEmIb1wnH7ZY");
}

// The director's form: the signature appended to an engine URL, only its path signed, within the
// room reserved for it (no reallocation).
TEST(UrlSigner, AppendedSignatureSignsThePathAfterTheBaseInTheRoomReserved) {
  url_signer s(std::string(32, 'k'));
  std::string base = "http://127.0.0.1:8081";
  std::string url = base + "/v1/segments/news/3.ts";
  url.reserve(url.size() + 1 + url_signer::query_max);
  const char* room = url.data();
  s.append_signed_query(url, base.size(), t0 + 30);
  EXPECT_EQ(url, base +
                     "/v1/segments/news/3.ts?vg_exp=1800000030&vg_sig=oSYO5bh5iDlCk_Q1rCyUrQ42tT-"
                     "cPmYTEmIb1wnH7ZY");
  EXPECT_EQ(url.data(), room);
  EXPECT_TRUE(s.verify(std::string_view(url).substr(base.size()), t0));
  std::string longest = "/p";  // the longest expiry: query_max is enough
  s.append_signed_query(longest, 0, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(longest.size(), 2 + 1 + url_signer::query_max);
}

TEST(UrlSigner, SignedPathVerifiesUntilItExpires) {
  url_signer s(std::string(32, 'k'));
  std::string url = s.sign("/v1/segments/news/3.ts", t0 + 30);
  EXPECT_TRUE(s.verify(url, t0));
  EXPECT_TRUE(s.verify(url, t0 + 29));
  auto late = s.verify(url, t0 + 30);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.err().code, errc::forbidden);
}

TEST(UrlSigner, SignatureReplayedOnAnotherPathIsRefused) {
  url_signer s(std::string(32, 'k'));
  std::string q = s.sign_query("/v1/segments/news/3.ts", t0 + 30);
  EXPECT_FALSE(s.verify("/v1/segments/news/4.ts?" + q, t0));
  EXPECT_FALSE(s.verify("/v1/segments/film/3.ts?" + q, t0));
  EXPECT_TRUE(s.verify("/v1/segments/news/3.ts?" + q, t0));
}

TEST(UrlSigner, OtherKeyMissingAndMalformedSignaturesAreRefused) {
  url_signer s(std::string(32, 'k'));
  url_signer other(std::string(32, 'o'));
  std::string path = "/v1/segments/news/3.ts";
  EXPECT_FALSE(s.verify(other.sign(path, t0 + 30), t0));
  auto missing = s.verify(path, t0);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.err().code, errc::unauthorized);
  std::string good = s.sign(path, t0 + 30);
  // The expiry moved later with the old signature.
  std::string moved = good;
  moved.replace(moved.find("vg_exp=") + 7, std::to_string(t0 + 30).size(), std::to_string(t0 + 31));
  EXPECT_FALSE(s.verify(moved, t0));
  EXPECT_FALSE(s.verify(good + "&vg_exp=1", t0));  // two expiries
  EXPECT_FALSE(s.verify(path + "?vg_exp=abc&vg_sig=x", t0));
  EXPECT_FALSE(s.verify(s.sign(path, t0 + 100000), t0));  // too far ahead
}

TEST(Password, HashVerifiesOnlyItsPassword) {
  password_cost cheap{1, 8 << 20};
  auto h = hash_password("correct horse", cheap);
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->starts_with("$argon2id$"));
  EXPECT_TRUE(verify_password(*h, "correct horse"));
  EXPECT_FALSE(verify_password(*h, "correct horsE"));
  EXPECT_FALSE(verify_password(*h, ""));
  EXPECT_FALSE(verify_password("", "correct horse"));
  EXPECT_FALSE(verify_password("$argon2id$garbage", "correct horse"));
  auto again = hash_password("correct horse", cheap);
  EXPECT_NE(*again, *h);  // salted
  EXPECT_FALSE(hash_password(""));
  EXPECT_FALSE(hash_password(std::string(2000, 'x')));
}

}  // namespace
}  // namespace vodgrid::auth
