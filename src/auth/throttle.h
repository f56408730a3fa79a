// Login throttling (issue 17, item 7): failed logins slow down per account and per client address
// (exponential back-off with a cap), and at most a few password checks of one account or address
// run at once, so that a flood of guesses is answered 429 at once instead of queueing Argon2id work
// in front of everyone else's logins. Whether an account exists plays no part: a name is throttled
// the same whether it names an account or not.
// Threading: thread-safe (one mutex); each call is a few map operations.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace vodgrid::auth {

struct throttle_options {
  uint32_t account_free_failures = 5;           // failed logins of one account before it waits
  uint32_t address_free_failures = 20;          // failed logins from one address before it waits
  std::chrono::milliseconds first_wait{1'000};  // the wait after the first failure past the free
                                                // ones, doubled by each further failure
  std::chrono::milliseconds max_wait{60'000};   // the cap of that wait
  // Password checks of one account at once; and for one address that has failed lately (an
  // address without failures, such as the local grid's daemons logging in together at start, is
  // bounded only by the daemon's queue of checks).
  uint32_t account_in_flight = 1;
  uint32_t address_in_flight = 2;
  std::chrono::milliseconds forget_after{15 * 60'000};  // failures older than this are forgotten
  size_t max_entries = 100'000;  // accounts and addresses remembered (oldest dropped beyond)
};

class login_throttle {
 public:
  using clock = std::chrono::steady_clock;
  explicit login_throttle(throttle_options o = {}) : opts_(o) {}

  // Before a password check of `account` (kind/name as submitted) from `address`: nullopt, and the
  // check is counted in flight until finish(); or how long the client must wait (at least 1 s).
  std::optional<std::chrono::seconds> begin(std::string_view account, std::string_view address,
                                            clock::time_point now = clock::now());
  // After the check begun: a bad password lengthens both waits; a good one clears the account's
  // failures (not the address's: a guesser must not clear them with an account of its own); an
  // error (the database's) changes neither.
  enum class outcome { good, bad, error };
  void finish(std::string_view account, std::string_view address, outcome o,
              clock::time_point now = clock::now());

  size_t entries() const;

 private:
  struct entry {
    uint32_t failures = 0;
    uint32_t in_flight = 0;
    clock::time_point blocked_until{};
    clock::time_point last_failure{};
  };
  using table = std::unordered_map<std::string, entry>;
  std::chrono::milliseconds wait_for(uint32_t failures, uint32_t free) const;
  void fail(entry& e, uint32_t free, clock::time_point now) const;
  void forget_old(table& t, clock::time_point now);

  throttle_options opts_;
  mutable std::mutex mu_;  // guards accounts_ and addresses_
  table accounts_;
  table addresses_;
};

}  // namespace vodgrid::auth
