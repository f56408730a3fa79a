#include "api/field_reader.h"

#include <fmt/format.h>

#include <limits>

namespace vodgrid::api {

namespace json = boost::json;

field_reader::field_reader(const json::object& o, std::string_view name)
    : object_(&o), key_(name) {}

field_reader::field_reader(const json::value& v, const field_reader* parent, std::string_view key,
                           std::optional<size_t> index)
    : value_(&v),
      object_(v.is_object() ? &v.as_object() : nullptr),
      parent_(parent),
      key_(key),
      index_(index) {}

std::string field_reader::path(std::string_view k) const {
  std::string p;
  if (parent_) {
    p = parent_->path(key_);
  } else {
    p = key_;
  }
  if (index_) {
    p += fmt::format("[{}]", *index_);
  }
  if (!k.empty()) {
    p += '.';
    p += k;
  }
  return p;
}

void field_reader::fail(std::string_view k, std::string_view what) {
  if (!err_) {
    err_ = make_error(errc::invalid_argument, fmt::format("{}: {}", path(k), what));
  }
}

void field_reader::adopt(field_reader& child) {
  if (child.err_ && !err_) {
    err_ = std::move(child.err_);
  }
}

std::string field_reader::more_than(size_t max) {
  return fmt::format("has more than {} entries", max);
}

const json::value* field_reader::find(std::string_view k, need n) {
  if (err_) {
    return nullptr;
  }
  const json::value* v = nullptr;
  if (k.empty()) {
    v = value_;
  } else if (!object_) {
    fail({}, "must be an object");
    return nullptr;
  } else {
    v = object_->if_contains(k);
  }
  if (!v) {
    if (n == need::required) {
      fail(k, "is missing");
    }
    return nullptr;
  }
  if (v->is_null() && n == need::nullable) {
    return nullptr;
  }
  return v;
}

void field_reader::string(std::string_view k, std::string& out, size_t max, need n) {
  auto* v = find(k, n);
  if (!v) {
    return;
  }
  if (!v->is_string()) {
    fail(k, "must be a string");
  } else if (v->as_string().size() > max) {
    fail(k, fmt::format("is longer than {} characters", max));
  } else {
    out = v->as_string();
  }
}

void field_reader::u64(std::string_view k, uint64_t& out, need n) {
  auto* v = find(k, n);
  if (!v) {
    return;
  }
  if (v->is_uint64()) {
    out = v->as_uint64();
  } else if (v->is_int64() && v->as_int64() >= 0) {
    out = static_cast<uint64_t>(v->as_int64());
  } else {
    fail(k, "must be a non-negative integer");
  }
}

void field_reader::u32(std::string_view k, uint32_t& out, need n) {
  uint64_t wide = out;
  u64(k, wide, n);
  if (wide > UINT32_MAX) {
    fail(k, "is out of range");
  } else if (ok()) {
    out = static_cast<uint32_t>(wide);
  }
}

void field_reader::u16(std::string_view k, uint16_t& out, need n) {
  uint64_t wide = out;
  u64(k, wide, n);
  if (wide > UINT16_MAX) {
    fail(k, "is out of range");
  } else if (ok()) {
    out = static_cast<uint16_t>(wide);
  }
}

void field_reader::i64(std::string_view k, int64_t& out, need n) {
  auto* v = find(k, n);
  if (!v) {
    return;
  }
  if (v->is_int64()) {
    out = v->as_int64();
  } else if (v->is_uint64() && v->as_uint64() <= uint64_t(INT64_MAX)) {
    out = static_cast<int64_t>(v->as_uint64());
  } else {
    fail(k, "must be an integer");
  }
}

void field_reader::number(std::string_view k, double& out, double lo, double hi, need n) {
  auto* v = find(k, n);
  if (!v) {
    return;
  }
  if (!v->is_number()) {
    fail(k, "must be a number");
    return;
  }
  double d = v->to_number<double>();
  if (!(d >= lo && d <= hi)) {  // NaN too
    fail(k, hi == std::numeric_limits<double>::max()
                ? fmt::format("must be at least {}", lo)
                : fmt::format("must be within {}..{}", lo, hi));
  } else {
    out = d;
  }
}

void field_reader::flag(std::string_view k, bool& out, bool absent) {
  if (err_) {
    return;
  }
  auto* v = find(k, need::optional);
  if (!v) {
    out = absent;
  } else if (!v->is_bool()) {
    fail(k, "must be true or false");
  } else {
    out = v->as_bool();
  }
}

void field_reader::index(std::string_view k, segment_index& out) {
  uint64_t i = 0;
  u64(k, i);
  if (i >= segment_index::max) {
    fail(k, "is out of range");
  } else if (ok()) {
    out = segment_index{static_cast<uint32_t>(i)};
  }
}

void field_reader::digest(std::string_view k, sha256_digest& out) {
  std::string hex;
  string(k, hex, 64);
  if (!ok()) {
    return;
  }
  if (auto d = parse_sha256_hex(hex)) {
    out = *d;
  } else {
    fail(k, "must be 64 hex digits");
  }
}

void read(field_reader& r, segment_key& v) {
  r.name("program", v.program);
  r.index("index", v.index);
}

boost::json::object key_json(const segment_key& k) {
  return boost::json::object{{"program", k.program.str()}, {"index", k.index.v}};
}

}  // namespace vodgrid::api
