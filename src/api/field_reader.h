// Reads the fields of a JSON value into a wire type, one call per field: the first failure wins
// (every later call does nothing) and its message names the field's path, e.g.
// "heartbeat.added[3].sha256: must be 64 hex digits". Reads store into the members of the value
// being decoded (rather than return each) so that a decoder is the list of its fields. A reader
// borrows the JSON and the field names it is given: both outlive it. Private to api.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "base/ids.h"
#include "base/result.h"
#include "base/sha256.h"

namespace vodgrid::api {

// Whether a field may be left out. An optional field that is absent (or, if nullable, null) leaves
// its target as it is, so the target's initial value is the default.
enum class need { required, optional, nullable };

class field_reader {
 public:
  // The root: `name` starts every path (the wire type's name).
  field_reader(const boost::json::object& o, std::string_view name);

  // Each read stores field `k` of the object read into `out`; k empty reads the value itself (an
  // entry of an array).
  void string(std::string_view k, std::string& out, size_t max, need n = need::required);
  void u64(std::string_view k, uint64_t& out, need n = need::required);
  void u32(std::string_view k, uint32_t& out, need n = need::required);
  void u16(std::string_view k, uint16_t& out, need n = need::required);
  void i64(std::string_view k, int64_t& out, need n = need::required);
  // A number within [lo, hi].
  void number(std::string_view k, double& out, double lo, double hi, need n = need::optional);
  // true or false; an absent field reads as `absent`.
  void flag(std::string_view k, bool& out, bool absent = false);
  // A name (base/ids.h): program_id, engine_id, station_id.
  template <class Id>
  void name(std::string_view k, Id& out, need n = need::required) {
    if (!find(k, n)) {
      return;
    }
    std::string s;
    string(k, s, 64);
    if (!ok()) {
      return;
    }
    if (auto id = Id::parse(s)) {
      out = *id;
    } else {
      fail(k, "must be 1-64 characters of [A-Za-z0-9_-]");
    }
  }
  void index(std::string_view k, segment_index& out);
  void digest(std::string_view k, sha256_digest& out);

  // An object: read(field_reader&) reads its fields.
  template <class F>
  void object(std::string_view k, F read, need n = need::required) {
    auto* v = find(k, n);
    if (!v) {
      return;
    }
    if (!v->is_object()) {
      fail(k, "must be an object");
      return;
    }
    field_reader child(*v, this, k);
    read(child);
    adopt(child);
  }

  // An array of at most `max` entries: read(field_reader&) reads each (k empty: this value).
  template <class F>
  void elements(std::string_view k, size_t max, F read, need n = need::required) {
    auto* v = find(k, n);
    if (!v) {
      return;
    }
    if (!v->is_array()) {
      fail(k, "must be an array");
      return;
    }
    auto& a = v->as_array();
    if (a.size() > max) {
      fail(k, more_than(max));
      return;
    }
    for (size_t i = 0; i < a.size() && ok(); ++i) {
      field_reader entry(a[i], this, k, i);
      read(entry);
      adopt(entry);
    }
  }

  // Field k (empty: the value read itself), or nullptr when it is absent (an error if required),
  // null and nullable, or an earlier read failed.
  const boost::json::value* find(std::string_view k, need n = need::optional);
  // A failure of meaning at field k (empty: the value read), unless an earlier one came first.
  void fail(std::string_view k, std::string_view what);
  bool ok() const { return !err_; }

  // The decoded value, or the first failure.
  template <class T>
  result<T> done(T v) {
    if (err_) {
      return std::move(*err_);
    }
    return v;
  }

 private:
  // An entry (index set) or a field of the reader `parent`; paths are built only on failure.
  field_reader(const boost::json::value& v, const field_reader* parent, std::string_view key,
               std::optional<size_t> index = std::nullopt);
  std::string path(std::string_view k) const;
  void adopt(field_reader& child);
  static std::string more_than(size_t max);

  const boost::json::value* value_ = nullptr;    // null at the root
  const boost::json::object* object_ = nullptr;  // null when the value read is no object
  const field_reader* parent_ = nullptr;
  std::string_view key_;  // the root's name, or the field in the parent
  std::optional<size_t> index_;
  std::optional<error> err_;  // the first failure
};

// A segment key, {"program": ..., "index": ...}, read and written: every module's wire types name
// segments this way.
void read(field_reader& r, segment_key& v);
boost::json::object key_json(const segment_key& k);

}  // namespace vodgrid::api
