#include "console/quantiles.h"

#include <boost/json/object.hpp>

#include <algorithm>
#include <cmath>

namespace vodgrid::console {

namespace {

constexpr double smallest = 1e-6;  // seconds: anything below is 0 to a viewer
constexpr double growth = 1.01;
constexpr size_t max_buckets = 2'500;  // smallest · growth^2500: about 28 hours

double log_growth() {
  static const double v = std::log(growth);
  return v;
}

}  // namespace

void quantiles::add(double seconds) {
  ++count_;
  if (!(seconds >= smallest)) {  // also NaN
    ++zeros_;
    return;
  }
  max_ = std::max(max_, seconds);
  auto i = static_cast<size_t>(std::log(seconds / smallest) / log_growth());
  i = std::min(i, max_buckets - 1);
  if (buckets_.size() <= i) {
    buckets_.resize(i + 1);
  }
  ++buckets_[i];
}

void quantiles::merge(const quantiles& other) {
  if (buckets_.size() < other.buckets_.size()) {
    buckets_.resize(other.buckets_.size());
  }
  for (size_t i = 0; i < other.buckets_.size(); ++i) {
    buckets_[i] += other.buckets_[i];
  }
  zeros_ += other.zeros_;
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
}

double quantiles::at(double q) const {
  if (count_ == 0) {
    return 0;
  }
  auto rank = static_cast<uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * count_));
  rank = std::max<uint64_t>(rank, 1);
  if (rank <= zeros_) {
    return 0;
  }
  if (rank == count_) {
    return max_;  // the largest sample is kept exactly
  }
  uint64_t seen = zeros_;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      // The bucket's geometric middle, never past the largest sample.
      return std::min(max_, smallest * std::exp((i + 0.5) * log_growth()));
    }
  }
  return max_;
}

boost::json::value quantiles::to_json() const {
  return boost::json::object{
      {"count", count_}, {"p50", at(0.5)}, {"p95", at(0.95)}, {"p99", at(0.99)}, {"max", max_}};
}

}  // namespace vodgrid::console
