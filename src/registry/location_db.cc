#include "registry/location_db.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

namespace vodgrid::registry {

bool segment_bits::test(uint32_t i) const {
  size_t byte = i / 8;
  return byte < bytes_.size() && (static_cast<uint8_t>(bytes_[byte]) >> (i % 8)) & 1;
}

void segment_bits::set(uint32_t i, bool on) {
  size_t byte = i / 8;
  if (byte >= bytes_.size()) {
    if (!on) {
      return;
    }
    bytes_.resize(byte + 1, '\0');
  }
  auto b = static_cast<uint8_t>(bytes_[byte]);
  b = on ? static_cast<uint8_t>(b | (1u << (i % 8))) : static_cast<uint8_t>(b & ~(1u << (i % 8)));
  bytes_[byte] = static_cast<char>(b);
  while (!on && !bytes_.empty() && bytes_.back() == '\0') {
    bytes_.pop_back();
  }
}

uint64_t segment_bits::count() const {
  uint64_t n = 0;
  for (char c : bytes_) {
    n += static_cast<uint64_t>(std::popcount(static_cast<uint8_t>(c)));
  }
  return n;
}

namespace {

constexpr std::string_view schema = R"(
CREATE TABLE IF NOT EXISTS stations (
  name TEXT PRIMARY KEY,
  director_url TEXT NOT NULL,
  home BIGINT NOT NULL,
  x_km DOUBLE PRECISION NOT NULL,
  y_km DOUBLE PRECISION NOT NULL,
  uplink_bps BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS programs (
  id TEXT PRIMARY KEY,
  manifest TEXT NOT NULL,
  targets TEXT NOT NULL,
  prefetch BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS holdings (
  program TEXT NOT NULL,
  station TEXT NOT NULL,
  bits BLOB NOT NULL,
  held BIGINT NOT NULL,
  PRIMARY KEY (program, station)
);
CREATE TABLE IF NOT EXISTS engine_holdings (
  program TEXT NOT NULL,
  station TEXT NOT NULL,
  engine TEXT NOT NULL,
  bits BLOB NOT NULL,
  filling BLOB NOT NULL,
  PRIMARY KEY (program, station, engine)
);
CREATE TABLE IF NOT EXISTS report_seqs (
  station TEXT PRIMARY KEY,
  seq BIGINT NOT NULL
);
)";

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v) {
    out += (out.empty() ? "" : ",") + s;
  }
  return out;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) {
      j = s.size();
    }
    if (j > i) {
      out.push_back(s.substr(i, j - i));
    }
    i = j + 1;
  }
  return out;
}

result<program_record> program_of(const db::row& r) {
  auto id = program_id::parse(r.text(0));
  if (!id) {
    return make_error(errc::io_error, "a program row has a bad id: " + r.text(0));
  }
  return program_record{*id, r.text(1), split(r.text(2)), static_cast<uint32_t>(r.i64(3))};
}

}  // namespace

result<std::unique_ptr<location_db>> location_db::open(const std::string& url) {
  auto c = db::open(url);
  if (!c) {
    return c.err();
  }
  if (auto st = (*c)->exec_script(schema); !st) {
    return st.err();
  }
  return std::unique_ptr<location_db>(new location_db(std::move(*c)));
}

status location_db::put_station(const station_record& s) {
  auto r = db_->exec(
      "INSERT INTO stations (name, director_url, home, x_km, y_km, uplink_bps) "
      "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET "
      "director_url = excluded.director_url, home = excluded.home, x_km = excluded.x_km, "
      "y_km = excluded.y_km, uplink_bps = excluded.uplink_bps",
      {s.name.str(), s.director_url, int64_t{s.home ? 1 : 0}, s.x_km, s.y_km,
       static_cast<int64_t>(s.uplink_bits_per_second)});
  if (!r) {
    return r.err();
  }
  return {};
}

result<std::vector<station_record>> location_db::stations() {
  auto rows = db_->query(
      "SELECT name, director_url, home, x_km, y_km, uplink_bps FROM stations ORDER BY name");
  if (!rows) {
    return rows.err();
  }
  std::vector<station_record> out;
  for (auto& r : *rows) {
    auto name = station_id::parse(r.text(0));
    if (!name) {
      continue;
    }
    out.push_back(
        {*name, r.text(1), r.i64(2) != 0, r.f64(3), r.f64(4), static_cast<uint64_t>(r.i64(5))});
  }
  return out;
}

status location_db::put_program(const program_record& p) {
  auto r = db_->exec(
      "INSERT INTO programs (id, manifest, targets, prefetch) VALUES ($1, $2, $3, $4) "
      "ON CONFLICT (id) DO UPDATE SET manifest = excluded.manifest, targets = excluded.targets, "
      "prefetch = excluded.prefetch",
      {p.id.str(), p.manifest_json, join(p.targets), static_cast<int64_t>(p.prefetch)});
  if (!r) {
    return r.err();
  }
  return {};
}

result<std::optional<program_record>> location_db::program(const program_id& id) {
  auto rows =
      db_->query("SELECT id, manifest, targets, prefetch FROM programs WHERE id = $1", {id.str()});
  if (!rows) {
    return rows.err();
  }
  if (rows->empty()) {
    return std::optional<program_record>();
  }
  auto p = program_of(rows->front());
  if (!p) {
    return p.err();
  }
  return std::optional<program_record>(std::move(*p));
}

result<std::vector<program_record>> location_db::programs() {
  auto rows = db_->query("SELECT id, manifest, targets, prefetch FROM programs ORDER BY id");
  if (!rows) {
    return rows.err();
  }
  std::vector<program_record> out;
  for (auto& r : *rows) {
    auto p = program_of(r);
    if (!p) {
      return p.err();
    }
    out.push_back(std::move(*p));
  }
  return out;
}

result<std::pair<std::vector<program_record>, uint64_t>> location_db::program_page(size_t limit) {
  auto rows = db_->query(
      fmt::format("SELECT id, '', targets, prefetch FROM programs ORDER BY id LIMIT {}", limit));
  if (!rows) {
    return rows.err();
  }
  std::pair<std::vector<program_record>, uint64_t> out;
  for (auto& r : *rows) {
    auto p = program_of(r);
    if (!p) {
      return p.err();
    }
    out.first.push_back(std::move(*p));
  }
  auto n = db_->query("SELECT COUNT(*) FROM programs");
  if (!n) {
    return n.err();
  }
  out.second = n->empty() ? 0 : static_cast<uint64_t>((*n)[0].i64(0));
  return out;
}

status location_db::apply(const station_id& station, const std::vector<location_change>& changes) {
  auto r = apply_report(station, 0, changes);
  return r ? status{} : status{r.err()};
}

auto location_db::apply_report(const station_id& station, uint64_t seq,
                               const std::vector<location_change>& changes)
    -> result<report_outcome> {
  // Group by program, keeping the order within each: one read-modify-write of the station's rows
  // of each program. Station and engine rows are independent, so the order between them is moot.
  std::map<program_id, std::vector<const location_change*>> by_program;
  for (auto& c : changes) {
    by_program[c.key.program].push_back(&c);
  }
  return db::in_transaction(*db_, [&]() -> result<report_outcome> {
    if (seq > 0) {
      // Taken only above the station's last: on PostgreSQL the upsert locks the row, so two
      // registry daemons applying reports of one station at once take turns, and the second
      // compares with what the first committed.
      auto n = db_->exec(
          "INSERT INTO report_seqs (station, seq) VALUES ($1, $2) ON CONFLICT (station) DO "
          "UPDATE SET seq = excluded.seq WHERE report_seqs.seq < excluded.seq",
          {station.str(), static_cast<int64_t>(seq)});
      if (!n) {
        return n.err();
      }
      if (*n == 0) {  // older than (or the same as) one applied: changes nothing
        auto last = db_->query("SELECT seq FROM report_seqs WHERE station = $1", {station.str()});
        if (!last) {
          return last.err();
        }
        return report_outcome{false,
                              last->empty() ? seq : static_cast<uint64_t>((*last)[0].i64(0))};
      }
    }
    for (auto& [program, list] : by_program) {
      if (auto st = apply_station(program, station, list); !st) {
        return st.err();
      }
      if (auto st = apply_engines(program, station, list); !st) {
        return st.err();
      }
    }
    return report_outcome{};
  });
}

status location_db::apply_station(const program_id& program, const station_id& station,
                                  const std::vector<const location_change*>& list) {
  if (std::none_of(list.begin(), list.end(), [](auto* c) { return !c->engine; })) {
    return {};
  }
  std::string lock = db_->kind() == db::dialect::postgresql ? " FOR UPDATE" : "";
  auto rows = db_->query("SELECT bits FROM holdings WHERE program = $1 AND station = $2" + lock,
                         {program.str(), station.str()});
  if (!rows) {
    return rows.err();
  }
  segment_bits bits(rows->empty() ? std::string() : rows->front().bytes(0));
  for (auto* c : list) {
    if (!c->engine) {
      bits.set(c->key.index.v, c->held);
    }
  }
  auto n = static_cast<int64_t>(bits.count());
  auto w =
      rows->empty()
          ? db_->exec("INSERT INTO holdings (program, station, bits, held) VALUES ($1, $2, $3, $4)",
                      {program.str(), station.str(), db::blob{bits.bytes()}, n})
          : db_->exec(
                "UPDATE holdings SET bits = $3, held = $4 WHERE program = $1 AND station = $2",
                {program.str(), station.str(), db::blob{bits.bytes()}, n});
  if (!w) {
    return w.err();
  }
  return {};
}

status location_db::apply_engines(const program_id& program, const station_id& station,
                                  const std::vector<const location_change*>& list) {
  if (std::none_of(list.begin(), list.end(), [](auto* c) { return c->engine.has_value(); })) {
    return {};
  }
  std::string lock = db_->kind() == db::dialect::postgresql ? " FOR UPDATE" : "";
  auto rows = db_->query(
      "SELECT engine, bits, filling FROM engine_holdings WHERE program = $1 AND station = $2" +
          lock,
      {program.str(), station.str()});
  if (!rows) {
    return rows.err();
  }
  struct engine_row {
    segment_bits whole, filling;
    bool stored = false;
    bool touched = false;
  };
  std::map<std::string, engine_row> engines;
  for (auto& r : *rows) {
    engines[r.text(0)] = {segment_bits(r.bytes(1)), segment_bits(r.bytes(2)), true};
  }
  for (auto* c : list) {
    if (!c->engine) {
      continue;
    }
    auto& e = engines[c->engine->str()];
    e.touched = true;
    if (c->filling) {
      e.filling.set(c->key.index.v, c->held);
    } else {
      // Held whole, or gone: either way the engine is no longer receiving it.
      e.whole.set(c->key.index.v, c->held);
      e.filling.set(c->key.index.v, false);
    }
  }
  for (auto& [engine, e] : engines) {
    if (!e.touched) {
      continue;
    }
    result<int64_t> w = int64_t{0};
    if (e.whole.count() == 0 && e.filling.count() == 0) {
      // An engine holding nothing of the program keeps no row: rows stay programs × stations ×
      // engines holding any of it.
      if (e.stored) {
        w = db_->exec(
            "DELETE FROM engine_holdings WHERE program = $1 AND station = $2 AND engine = $3",
            {program.str(), station.str(), engine});
      }
    } else if (e.stored) {
      w = db_->exec(
          "UPDATE engine_holdings SET bits = $4, filling = $5 "
          "WHERE program = $1 AND station = $2 AND engine = $3",
          {program.str(), station.str(), engine, db::blob{e.whole.bytes()},
           db::blob{e.filling.bytes()}});
    } else {
      w = db_->exec(
          "INSERT INTO engine_holdings (program, station, engine, bits, filling) "
          "VALUES ($1, $2, $3, $4, $5)",
          {program.str(), station.str(), engine, db::blob{e.whole.bytes()},
           db::blob{e.filling.bytes()}});
    }
    if (!w) {
      return w.err();
    }
  }
  return {};
}

result<std::vector<std::string>> location_db::holders(const segment_key& key) {
  auto rows = db_->query("SELECT station, bits FROM holdings WHERE program = $1 AND held > 0",
                         {key.program.str()});
  if (!rows) {
    return rows.err();
  }
  std::vector<std::string> out;
  for (auto& r : *rows) {
    if (segment_bits(r.bytes(1)).test(key.index.v)) {
      out.push_back(r.text(0));
    }
  }
  return out;
}

result<std::vector<station_locations>> location_db::locations(const segment_key& key) {
  auto stations = db_->query("SELECT station, bits FROM holdings WHERE program = $1 AND held > 0",
                             {key.program.str()});
  if (!stations) {
    return stations.err();
  }
  auto engines =
      db_->query("SELECT station, engine, bits, filling FROM engine_holdings WHERE program = $1",
                 {key.program.str()});
  if (!engines) {
    return engines.err();
  }
  std::map<std::string, station_locations> by_station;
  auto at = [&](const std::string& name) -> station_locations& {
    auto& s = by_station[name];
    s.station = name;
    return s;
  };
  for (auto& r : *stations) {
    if (segment_bits(r.bytes(1)).test(key.index.v)) {
      at(r.text(0)).complete = true;
    }
  }
  for (auto& r : *engines) {
    bool whole = segment_bits(r.bytes(2)).test(key.index.v);
    bool filling = segment_bits(r.bytes(3)).test(key.index.v);
    if (whole) {
      at(r.text(0)).engines.push_back(r.text(1));
    }
    if (filling) {
      at(r.text(0)).filling.push_back(r.text(1));
    }
  }
  std::vector<station_locations> out;
  out.reserve(by_station.size());
  for (auto& [name, s] : by_station) {
    std::sort(s.engines.begin(), s.engines.end());
    std::sort(s.filling.begin(), s.filling.end());
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

// A query of (name, count) rows as a map.
result<std::map<std::string, uint64_t>> count_map(db::connection& db, std::string_view sql,
                                                  const std::string& param) {
  auto rows = db.query(sql, {param});
  if (!rows) {
    return rows.err();
  }
  std::map<std::string, uint64_t> out;
  for (auto& r : *rows) {
    out[r.text(0)] = static_cast<uint64_t>(r.i64(1));
  }
  return out;
}

}  // namespace

result<std::map<std::string, uint64_t>> location_db::held_by(const station_id& station) {
  return count_map(*db_, "SELECT program, held FROM holdings WHERE station = $1 AND held > 0",
                   station.str());
}

result<std::map<std::string, uint64_t>> location_db::counts(const program_id& id) {
  return count_map(*db_, "SELECT station, held FROM holdings WHERE program = $1", id.str());
}

}  // namespace vodgrid::registry
