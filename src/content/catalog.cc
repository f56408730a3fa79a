#include "content/catalog.h"

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "content/lease.h"

namespace vodgrid::content {

namespace {

constexpr std::string_view schema = R"(
CREATE TABLE IF NOT EXISTS content_programs (
  id TEXT PRIMARY KEY,
  title TEXT NOT NULL,
  source TEXT NOT NULL,
  state TEXT NOT NULL,
  publish_at_ms BIGINT NOT NULL,
  targets TEXT NOT NULL,
  prefetch BIGINT NOT NULL,
  created_at_ms BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL,
  error TEXT NOT NULL,
  duration DOUBLE PRECISION NOT NULL,
  video_codec TEXT NOT NULL,
  audio_codec TEXT NOT NULL,
  width BIGINT NOT NULL,
  height BIGINT NOT NULL,
  bitrate BIGINT NOT NULL,
  video_frames BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS content_segments (
  program TEXT NOT NULL,
  idx BIGINT NOT NULL,
  duration DOUBLE PRECISION NOT NULL,
  size BIGINT NOT NULL,
  sha256 BLOB NOT NULL,
  PRIMARY KEY (program, idx)
);
CREATE TABLE IF NOT EXISTS content_renditions (
  program TEXT PRIMARY KEY,
  renditions TEXT NOT NULL,
  dropped TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS content_ingests (
  program TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  heartbeat_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS content_history (
  program TEXT NOT NULL,
  seq BIGINT NOT NULL,
  at_ms BIGINT NOT NULL,
  state TEXT NOT NULL,
  detail TEXT NOT NULL,
  PRIMARY KEY (program, seq)
);
)";

constexpr std::string_view stored_columns =
    "id, title, source, state, publish_at_ms, targets, prefetch, created_at_ms, updated_at_ms, "
    "error, duration, video_codec, audio_codec, width, height, bitrate, video_frames";
constexpr std::string_view columns =
    "id, title, source, state, publish_at_ms, targets, prefetch, created_at_ms, updated_at_ms, "
    "error, duration, video_codec, audio_codec, width, height, bitrate, video_frames, "
    "(SELECT COUNT(*) FROM content_segments s WHERE s.program = content_programs.id), "
    "COALESCE((SELECT renditions FROM content_renditions r WHERE r.program = content_programs.id), "
    "'[]'), "
    "COALESCE((SELECT dropped FROM content_renditions r WHERE r.program = content_programs.id), "
    "'[]')";

namespace json = boost::json;

// The renditions and the dropped tracks are kept as JSON arrays (api::rendition's own mapping):
// they are read and written whole, never queried.
std::string renditions_json(const std::vector<api::rendition>& list) {
  json::array a;
  for (auto& r : list) {
    a.push_back(api::to_json(r));
  }
  return json::serialize(a);
}

std::string dropped_json(const std::vector<std::string>& list) {
  json::array a;
  for (auto& d : list) {
    a.push_back(json::value(d));
  }
  return json::serialize(a);
}

status read_renditions(const std::string& id, const std::string& renditions,
                       const std::string& dropped, program_entry& p) {
  auto damaged = [&] {
    return make_error(errc::io_error, "the renditions of " + id + " are damaged");
  };
  boost::system::error_code ec;
  auto rs = json::parse(renditions, ec);
  auto ds = ec ? json::value() : json::parse(dropped, ec);
  if (ec || !rs.is_array() || !ds.is_array()) {
    return damaged();
  }
  for (auto& r : rs.as_array()) {
    auto v = r.is_object() ? api::from_json<api::rendition>(r.as_object())
                           : result<api::rendition>(damaged());
    if (!v) {
      return damaged();
    }
    p.renditions.push_back(std::move(*v));
  }
  for (auto& d : ds.as_array()) {
    if (!d.is_string()) {
      return damaged();
    }
    p.dropped.emplace_back(d.as_string());
  }
  return {};
}

int64_t ms(wall_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
wall_clock::time_point from_ms(int64_t v) {
  return wall_clock::time_point(std::chrono::milliseconds(v));
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v) {
    out += (out.empty() ? "" : ",") + s;
  }
  return out;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t j = s.find(',', i);
    j = j == std::string::npos ? s.size() : j;
    if (j > i) {
      out.push_back(s.substr(i, j - i));
    }
    i = j + 1;
  }
  return out;
}

result<program_entry> record_of(const db::row& r) {
  program_entry p;
  auto id = program_id::parse(r.text(0));
  auto st = parse_state(r.text(3));
  if (!id || !st) {
    return make_error(errc::io_error, "a catalog row is damaged: " + r.text(0));
  }
  p.id = *id;
  p.title = r.text(1);
  p.source = r.text(2);
  p.state = *st;
  p.publish_at = from_ms(r.i64(4));
  p.targets = split(r.text(5));
  p.prefetch = static_cast<uint32_t>(r.i64(6));
  p.created_at = from_ms(r.i64(7));
  p.updated_at = from_ms(r.i64(8));
  p.error = r.text(9);
  p.duration = r.f64(10);
  p.video_codec = r.text(11);
  p.audio_codec = r.text(12);
  p.width = static_cast<int>(r.i64(13));
  p.height = static_cast<int>(r.i64(14));
  p.bitrate = static_cast<uint64_t>(r.i64(15));
  p.video_frames = r.i64(16);
  p.segment_count = static_cast<size_t>(r.i64(17));
  VODGRID_TRY(read_renditions(r.text(0), r.text(18), r.text(19), p));
  return p;
}

// Appends a history entry; inside a transaction.
status record_change(db::connection& c, const program_id& id, program_state s,
                     wall_clock::time_point at, const std::string& detail) {
  auto r = c.exec(
      "INSERT INTO content_history (program, seq, at_ms, state, detail) "
      "SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM content_history WHERE program = $1",
      {id.str(), ms(at), std::string(to_string(s)), detail});
  return r ? status{} : status{r.err()};
}

}  // namespace

std::string_view to_string(program_state s) {
  switch (s) {
    case program_state::ingesting:
      return "ingesting";
    case program_state::inactive:
      return "inactive";
    case program_state::published:
      return "published";
    case program_state::withdrawn:
      return "withdrawn";
    case program_state::failed:
      return "failed";
  }
  return "failed";
}

std::optional<program_state> parse_state(std::string_view s) {
  for (auto st : {program_state::ingesting, program_state::inactive, program_state::published,
                  program_state::withdrawn, program_state::failed}) {
    if (to_string(st) == s) {
      return st;
    }
  }
  return std::nullopt;
}

bool can_change(program_state from, program_state to) {
  using S = program_state;
  switch (from) {
    case S::ingesting:
      return to == S::inactive || to == S::failed;
    case S::inactive:
      return to == S::published || to == S::withdrawn;
    case S::published:
      return to == S::withdrawn;
    case S::withdrawn:
      return to == S::published;
    case S::failed:
      return false;
  }
  return false;
}

result<std::unique_ptr<catalog>> catalog::open(db::connection& conn) {
  if (auto st = create_schema(conn, schema); !st) {
    return st.err();
  }
  return std::unique_ptr<catalog>(new catalog(conn));
}

status catalog::create(const program_entry& p, const std::string& owner) {
  return db::in_transaction(conn_, [&]() -> status {
    auto old =
        conn_.query("SELECT state FROM content_programs WHERE id = $1 FOR UPDATE", {p.id.str()});
    if (!old) {
      return old.err();
    }
    if (!old->empty()) {
      if (old->front().text(0) != to_string(program_state::failed)) {
        return make_error(errc::conflict, fmt::format("program {} already exists ({})", p.id.str(),
                                                      old->front().text(0)));
      }
      for (auto sql : {"DELETE FROM content_programs WHERE id = $1",
                       "DELETE FROM content_segments WHERE program = $1",
                       "DELETE FROM content_renditions WHERE program = $1"}) {
        if (auto r = conn_.exec(sql, {p.id.str()}); !r) {
          return r.err();
        }
      }
    }
    auto r = conn_.exec(
        fmt::format("INSERT INTO content_programs ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, "
                    "'', 0, '', '', 0, 0, 0, 0)",
                    stored_columns),
        {p.id.str(), p.title, p.source, std::string(to_string(program_state::ingesting)),
         ms(p.publish_at), join(p.targets), static_cast<int64_t>(p.prefetch), ms(p.created_at)});
    if (!r) {
      return r.err();
    }
    auto o = conn_.exec(
        fmt::format(
            "INSERT INTO content_ingests (program, owner, heartbeat_ms) VALUES ($1, $2, {}) "
            "ON CONFLICT (program) DO UPDATE SET owner = excluded.owner, "
            "heartbeat_ms = excluded.heartbeat_ms",
            db_now_ms(conn_.kind())),
        {p.id.str(), owner});
    if (!o) {
      return o.err();
    }
    return record_change(conn_, p.id, program_state::ingesting, p.created_at, p.source);
  });
}

status catalog::change_state(const program_id& id, program_state to, wall_clock::time_point at,
                             std::string detail, std::optional<program_state> only_from) {
  return db::in_transaction(conn_, [&]() -> status {
    auto old =
        conn_.query("SELECT state FROM content_programs WHERE id = $1 FOR UPDATE", {id.str()});
    if (!old) {
      return old.err();
    }
    if (old->empty()) {
      return make_error(errc::not_found, "no such program: " + id.str());
    }
    auto from = parse_state(old->front().text(0));
    if (!from || !can_change(*from, to) || (only_from && *from != *only_from)) {
      return make_error(errc::conflict, fmt::format("program {} is {}: it cannot become {}",
                                                    id.str(), old->front().text(0), to_string(to)));
    }
    auto r = conn_.exec(
        "UPDATE content_programs SET state = $2, updated_at_ms = $3, "
        "error = CASE WHEN $2 = 'failed' THEN $4 ELSE error END WHERE id = $1",
        {id.str(), std::string(to_string(to)), ms(at), detail});
    if (!r) {
      return r.err();
    }
    if (*from == program_state::ingesting) {
      if (auto d = conn_.exec("DELETE FROM content_ingests WHERE program = $1", {id.str()}); !d) {
        return d.err();
      }
    }
    return record_change(conn_, id, to, at, detail);
  });
}

status catalog::heartbeat(const std::string& owner) {
  auto r = conn_.exec(fmt::format("UPDATE content_ingests SET heartbeat_ms = {} WHERE owner = $1",
                                  db_now_ms(conn_.kind())),
                      {owner});
  return r ? status{} : status{r.err()};
}

result<std::vector<program_id>> catalog::orphaned_ingests(std::chrono::milliseconds stale) {
  // A program ingesting without a row here was created before owners were recorded: orphaned too.
  auto rows = conn_.query(
      fmt::format("SELECT id FROM content_programs p WHERE state = 'ingesting' AND NOT EXISTS "
                  "(SELECT 1 FROM content_ingests i WHERE i.program = p.id AND "
                  "i.heartbeat_ms >= {} - $1) ORDER BY id",
                  db_now_ms(conn_.kind())),
      {static_cast<int64_t>(stale.count())});
  if (!rows) {
    return rows.err();
  }
  std::vector<program_id> out;
  for (auto& r : *rows) {
    if (auto id = program_id::parse(r.text(0))) {
      out.push_back(*id);
    }
  }
  return out;
}

status catalog::set_packaged(const program_entry& p) {
  return db::in_transaction(conn_, [&]() -> status {
    auto r = conn_.exec(
        "UPDATE content_programs SET duration = $2, video_codec = $3, audio_codec = $4, width = "
        "$5, height = $6, bitrate = $7, video_frames = $8 WHERE id = $1",
        {p.id.str(), p.duration, p.video_codec, p.audio_codec, static_cast<int64_t>(p.width),
         static_cast<int64_t>(p.height), static_cast<int64_t>(p.bitrate), p.video_frames});
    if (!r) {
      return r.err();
    }
    if (*r == 0) {
      return make_error(errc::not_found, "no such program: " + p.id.str());
    }
    for (auto sql : {"DELETE FROM content_segments WHERE program = $1",
                     "DELETE FROM content_renditions WHERE program = $1"}) {
      if (auto d = conn_.exec(sql, {p.id.str()}); !d) {
        return d.err();
      }
    }
    if (!p.renditions.empty() || !p.dropped.empty()) {
      auto ins = conn_.exec(
          "INSERT INTO content_renditions (program, renditions, dropped) VALUES ($1, $2, $3)",
          {p.id.str(), renditions_json(p.renditions), dropped_json(p.dropped)});
      if (!ins) {
        return ins.err();
      }
    }
    for (auto& s : p.segments) {
      auto ins = conn_.exec(
          "INSERT INTO content_segments (program, idx, duration, size, sha256) "
          "VALUES ($1, $2, $3, $4, $5)",
          {p.id.str(), static_cast<int64_t>(s.index.v), s.duration, static_cast<int64_t>(s.size),
           db::blob{std::string(s.sha256.begin(), s.sha256.end())}});
      if (!ins) {
        return ins.err();
      }
    }
    return {};
  });
}

status catalog::set_publish_at(const program_id& id, wall_clock::time_point t) {
  auto r =
      conn_.exec("UPDATE content_programs SET publish_at_ms = $2 WHERE id = $1", {id.str(), ms(t)});
  if (!r) {
    return r.err();
  }
  return *r == 0 ? status{make_error(errc::not_found, "no such program: " + id.str())} : status{};
}

result<std::optional<program_entry>> catalog::find(const program_id& id) {
  auto rows = conn_.query(fmt::format("SELECT {} FROM content_programs WHERE id = $1", columns),
                          {id.str()});
  if (!rows) {
    return rows.err();
  }
  if (rows->empty()) {
    return std::optional<program_entry>();
  }
  auto p = record_of(rows->front());
  if (!p) {
    return p.err();
  }
  return std::optional<program_entry>(std::move(*p));
}

result<std::optional<program_entry>> catalog::get(const program_id& id) {
  auto p = find(id);
  if (!p || !*p) {
    return p;
  }
  auto segs = conn_.query(
      "SELECT idx, duration, size, sha256 FROM content_segments WHERE program = $1 ORDER BY idx",
      {id.str()});
  if (!segs) {
    return segs.err();
  }
  for (auto& r : *segs) {
    api::segment_entry e;
    e.index = segment_index{static_cast<uint32_t>(r.i64(0))};
    e.duration = r.f64(1);
    e.size = static_cast<uint64_t>(r.i64(2));
    auto& b = r.bytes(3);
    if (b.size() != e.sha256.size()) {
      return make_error(errc::io_error, "a segment row of " + id.str() + " has a bad digest");
    }
    std::copy(b.begin(), b.end(), e.sha256.begin());
    (*p)->segments.push_back(e);
  }
  return p;
}

result<std::vector<program_entry>> catalog::list() {
  auto rows = conn_.query(fmt::format("SELECT {} FROM content_programs ORDER BY id", columns));
  if (!rows) {
    return rows.err();
  }
  std::vector<program_entry> out;
  for (auto& r : *rows) {
    auto p = record_of(r);
    if (!p) {
      return p.err();
    }
    out.push_back(std::move(*p));
  }
  return out;
}

result<std::vector<state_change>> catalog::history(const program_id& id) {
  auto rows = conn_.query(
      "SELECT at_ms, state, detail FROM content_history WHERE program = $1 ORDER BY seq",
      {id.str()});
  if (!rows) {
    return rows.err();
  }
  std::vector<state_change> out;
  for (auto& r : *rows) {
    auto st = parse_state(r.text(1));
    if (!st) {
      return make_error(errc::io_error, "a history row of " + id.str() + " is damaged");
    }
    out.push_back({from_ms(r.i64(0)), *st, r.text(2)});
  }
  return out;
}

}  // namespace vodgrid::content
