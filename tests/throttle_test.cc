// The login throttle's rules on a clock of our own (issue 17, item 7): free failures, back-off
// doubling to its cap, one check of an account at a time, what a good login clears.
#include <gtest/gtest.h>

#include "auth/sealed.h"
#include "auth/throttle.h"

namespace vodgrid::auth {
namespace {

using namespace std::chrono_literals;
using outcome = login_throttle::outcome;

struct ThrottleTest : ::testing::Test {
  throttle_options opts() {
    throttle_options o;
    o.account_free_failures = 3;
    o.address_free_failures = 5;
    o.first_wait = 1s;
    o.max_wait = 8s;
    return o;
  }
  login_throttle t{opts()};
  login_throttle::clock::time_point now{std::chrono::hours(1000)};

  // One whole check: nullopt when it ran (and `o` was recorded), else the wait asked for.
  std::optional<std::chrono::seconds> attempt(const std::string& account, const std::string& addr,
                                              outcome o = outcome::bad) {
    auto w = t.begin(account, addr, now);
    if (!w) {
      t.finish(account, addr, o, now);
    }
    return w;
  }
};

TEST_F(ThrottleTest, FailuresPastTheFreeOnesWaitTwiceAsLongEachTimeUpToTheCap) {
  for (int i = 0; i < 4; ++i) {  // 3 free, and the 4th sets the first wait
    EXPECT_FALSE(attempt("viewer/demo", "10.0.0.1")) << i;
  }
  std::vector<int64_t> waits;
  for (int i = 0; i < 6; ++i) {
    auto w = attempt("viewer/demo", "10.0.0.1");
    ASSERT_TRUE(w);
    waits.push_back(w->count());
    now += *w;
    EXPECT_FALSE(attempt("viewer/demo", "10.0.0.1"));  // its wait over, one more guess
  }
  EXPECT_EQ(waits, (std::vector<int64_t>{1, 2, 4, 8, 8, 8}));
}

TEST_F(ThrottleTest, AnAccountIsThrottledFromEveryAddressAndAnAddressForEveryAccount) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_FALSE(attempt("viewer/demo", "10.0.0." + std::to_string(i)));
  }
  EXPECT_TRUE(attempt("viewer/demo", "10.0.0.99"));
  EXPECT_FALSE(attempt("viewer/ann", "10.0.0.99", outcome::good));
  // Six accounts guessed once each from one address: the address waits.
  for (int i = 0; i < 6; ++i) {
    ASSERT_FALSE(attempt("viewer/u" + std::to_string(i), "10.9.9.9"));
  }
  EXPECT_TRUE(attempt("viewer/other", "10.9.9.9"));
  EXPECT_FALSE(attempt("viewer/other", "10.8.8.8", outcome::good));
}

TEST_F(ThrottleTest, OneCheckOfAnAccountAtATimeTheRestAreToldToWait) {
  ASSERT_FALSE(t.begin("viewer/demo", "10.0.0.1", now));
  for (int i = 0; i < 100; ++i) {
    auto w = t.begin("viewer/demo", "10.0.0.1", now);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->count(), 1);
  }
  // Other accounts from an address without failures are not held up.
  ASSERT_FALSE(t.begin("viewer/ann", "10.0.0.1", now));
  ASSERT_FALSE(t.begin("viewer/bob", "10.0.0.1", now));
  t.finish("viewer/demo", "10.0.0.1", outcome::bad, now);
  t.finish("viewer/ann", "10.0.0.1", outcome::good, now);
  t.finish("viewer/bob", "10.0.0.1", outcome::good, now);
  EXPECT_FALSE(attempt("viewer/demo", "10.0.0.1"));
}

TEST_F(ThrottleTest, AGoodLoginClearsTheAccountNotTheAddressAndErrorsCountForNeither) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(attempt("viewer/demo", "10.0.0.1"));
  }
  ASSERT_FALSE(attempt("viewer/demo", "10.0.0.1", outcome::good));
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(attempt("viewer/demo", "10.0.0.1"));  // free again for the account
  }
  // The address has 6 failures now: past its 5 free ones.
  EXPECT_TRUE(attempt("viewer/zed", "10.0.0.1"));
  for (int i = 0; i < 20; ++i) {
    ASSERT_FALSE(attempt("viewer/err", "10.7.7.7", outcome::error));
  }
}

TEST_F(ThrottleTest, FailuresAreForgottenAndTheTablesStayBounded) {
  throttle_options o = opts();
  o.max_entries = 100;
  o.forget_after = 60s;
  login_throttle small(o);
  for (int i = 0; i < 10'000; ++i) {
    auto name = "viewer/u" + std::to_string(i);
    auto addr = "10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    ASSERT_FALSE(small.begin(name, addr, now));
    small.finish(name, addr, outcome::bad, now);
  }
  EXPECT_LE(small.entries(), 200u);
  for (int i = 0; i < 4; ++i) {
    ASSERT_FALSE(attempt("viewer/demo", "10.0.0.1"));
  }
  ASSERT_TRUE(attempt("viewer/demo", "10.0.0.1"));
  now += 16min;
  EXPECT_FALSE(attempt("viewer/demo", "10.0.0.1"));  // forgotten: free again
}

TEST(KeySealer, OpensOnlyWithItsKeyAndContextAndRefusesAlteredValues) {
  key_sealer k(std::string(32, 'k'));
  auto s = k.seal("seed-bytes", "auth_keys/k1");
  EXPECT_TRUE(key_sealer::is_sealed(s));
  EXPECT_EQ(s.find("seed-bytes"), std::string::npos);
  EXPECT_NE(k.seal("seed-bytes", "auth_keys/k1"), s);  // a fresh nonce each time
  ASSERT_TRUE(k.open(s, "auth_keys/k1"));
  EXPECT_EQ(*k.open(s, "auth_keys/k1"), "seed-bytes");
  EXPECT_EQ(k.open(s, "auth_keys/k2").err().code, errc::forbidden);
  EXPECT_EQ(key_sealer(std::string(32, 'x')).open(s, "auth_keys/k1").err().code, errc::forbidden);
  auto altered = s;
  altered.back() ^= 1;
  EXPECT_EQ(k.open(altered, "auth_keys/k1").err().code, errc::forbidden);
  EXPECT_EQ(k.open(std::string(32, 's'), "auth_keys/k1").err().code, errc::invalid_argument);
  EXPECT_FALSE(key_sealer::is_sealed(std::string(32, 's')));
}

}  // namespace
}  // namespace vodgrid::auth
