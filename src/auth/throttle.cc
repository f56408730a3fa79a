// The login throttle's bookkeeping: two tables (accounts, addresses) of failures, waits and checks
// in flight, swept of forgotten entries when they grow past their bound.
#include "auth/throttle.h"

#include <algorithm>

namespace vodgrid::auth {

namespace {

std::chrono::seconds whole_seconds(login_throttle::clock::duration d) {
  auto s = std::chrono::ceil<std::chrono::seconds>(d);
  return std::max(s, std::chrono::seconds(1));
}

}  // namespace

std::chrono::milliseconds login_throttle::wait_for(uint32_t failures, uint32_t free) const {
  if (failures <= free) {
    return std::chrono::milliseconds(0);
  }
  uint32_t doublings = std::min<uint32_t>(failures - free - 1, 30);
  auto wait = opts_.first_wait * (int64_t{1} << std::min<uint32_t>(doublings, 20));
  return std::min(wait, opts_.max_wait);
}

void login_throttle::fail(entry& e, uint32_t free, clock::time_point now) const {
  e.failures = std::min<uint32_t>(e.failures + 1, 1'000'000);
  e.last_failure = now;
  auto w = wait_for(e.failures, free);
  if (w.count() > 0) {
    e.blocked_until = now + w;
  }
}

void login_throttle::forget_old(table& t, clock::time_point now) {
  if (t.size() < opts_.max_entries) {
    return;
  }
  std::erase_if(t, [&](const auto& kv) {
    auto& e = kv.second;
    return e.in_flight == 0 && e.blocked_until <= now && e.last_failure + opts_.forget_after <= now;
  });
  // Still full (a flood of fresh names): drop idle entries; entries in flight are kept, so the
  // tables hold at most max_entries plus the checks in flight.
  if (t.size() >= opts_.max_entries) {
    std::erase_if(t, [](const auto& kv) { return kv.second.in_flight == 0; });
  }
}

std::optional<std::chrono::seconds> login_throttle::begin(std::string_view account,
                                                          std::string_view address,
                                                          clock::time_point now) {
  std::lock_guard lock(mu_);
  forget_old(accounts_, now);
  forget_old(addresses_, now);
  auto& a = accounts_[std::string(account)];
  auto& d = addresses_[std::string(address)];
  for (auto* e : {&a, &d}) {
    if (e->failures > 0 && e->last_failure + opts_.forget_after <= now && e->blocked_until <= now) {
      e->failures = 0;
    }
  }
  auto until = std::max(a.blocked_until, d.blocked_until);
  if (until > now) {
    return whole_seconds(until - now);
  }
  if (a.in_flight >= opts_.account_in_flight ||
      (d.failures > 0 && d.in_flight >= opts_.address_in_flight)) {
    return std::chrono::seconds(1);
  }
  ++a.in_flight;
  ++d.in_flight;
  return std::nullopt;
}

void login_throttle::finish(std::string_view account, std::string_view address, outcome o,
                            clock::time_point now) {
  std::lock_guard lock(mu_);
  auto a = accounts_.find(std::string(account));
  auto d = addresses_.find(std::string(address));
  if (a != accounts_.end()) {
    a->second.in_flight -= a->second.in_flight > 0 ? 1 : 0;
    if (o == outcome::good) {
      a->second.failures = 0;
      a->second.blocked_until = {};
    } else if (o == outcome::bad) {
      fail(a->second, opts_.account_free_failures, now);
    }
  }
  if (d != addresses_.end()) {
    d->second.in_flight -= d->second.in_flight > 0 ? 1 : 0;
    if (o == outcome::bad) {
      fail(d->second, opts_.address_free_failures, now);
    }
  }
}

size_t login_throttle::entries() const {
  std::lock_guard lock(mu_);
  return accounts_.size() + addresses_.size();
}

}  // namespace vodgrid::auth
