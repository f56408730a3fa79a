// The station's hottest segments by decayed request count: see hot.h.
#include "director/hot.h"

#include <algorithm>
#include <cmath>

#include "base/thread_slot.h"

namespace vodgrid::director {

double hot_segments::decayed(const count& c, clock::time_point now) const {
  double dt = std::chrono::duration<double>(now - c.at).count();
  return dt <= 0 ? c.value : c.value * std::exp(-dt / static_cast<double>(tau_.count()));
}

void hot_segments::record(const segment_key& key, clock::time_point now) {
  auto& s = shards_[thread_slot() % shard_count];
  std::lock_guard lock(s.mu);
  auto& c = s.counts[key];
  c.value = decayed(c, now) + 1;
  c.at = now;
  if (s.counts.size() > max_entries_) {
    prune(s.counts, now);  // to at most half the bound: amortized O(1) per request
  }
}

size_t hot_segments::size() const {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.counts.size();
  }
  return n;
}

// Drops what has cooled below one request; if that is not enough, the colder half.
void hot_segments::prune(std::unordered_map<segment_key, count>& counts, clock::time_point now) {
  std::erase_if(counts, [&](auto& kv) { return decayed(kv.second, now) < 1; });
  if (counts.size() <= max_entries_ / 2) {
    return;
  }
  std::vector<double> values;
  values.reserve(counts.size());
  for (auto& [key, c] : counts) {
    values.push_back(decayed(c, now));
  }
  auto mid = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), mid, values.end());
  double median = *mid;
  std::erase_if(counts, [&](auto& kv) { return decayed(kv.second, now) < median; });
  if (counts.size() > max_entries_) {  // all alike: the bound holds all the same
    std::erase_if(counts, [&](auto& kv) { return decayed(kv.second, now) <= median; });
  }
}

std::vector<hot_segments::entry> hot_segments::top(size_t n, clock::time_point now) const {
  std::unordered_map<segment_key, double> sum;
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    for (auto& [key, c] : s.counts) {
      sum[key] += decayed(c, now);
    }
  }
  std::vector<entry> all;
  for (auto& [key, v] : sum) {
    if (v >= 0.5) {
      all.push_back({key, v});
    }
  }
  auto k = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end(),
                    [](const entry& a, const entry& b) {
                      return a.requests != b.requests ? a.requests > b.requests : a.key < b.key;
                    });
  all.resize(k);
  return all;
}

}  // namespace vodgrid::director
