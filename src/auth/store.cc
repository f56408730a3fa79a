// SQL of the auth database, in the portable subset of src/db.
#include "auth/store.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "auth/url_signer.h"

namespace vodgrid::auth {

namespace json = boost::json;

namespace {

constexpr std::string_view schema = R"(
CREATE TABLE IF NOT EXISTS auth_accounts (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  hash TEXT NOT NULL,
  programs TEXT NOT NULL,
  station TEXT NOT NULL,
  PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS auth_keys (
  kid TEXT NOT NULL PRIMARY KEY,
  seed BLOB NOT NULL,
  created_at BIGINT NOT NULL,
  signing_until BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_station_keys (
  station TEXT NOT NULL PRIMARY KEY,
  secret BLOB NOT NULL
);
)";

// Entitlements as stored: "*" or a JSON list of program ids.
std::string encode_programs(const account& a) {
  if (a.all_programs) {
    return "*";
  }
  json::array arr;
  for (auto& p : a.programs) {
    arr.push_back(json::value(p.str()));
  }
  return json::serialize(arr);
}

result<account> decode_row(const db::row& r) {
  account a;
  auto kind = parse_kind(r.text(0));
  if (!kind) {
    return make_error(errc::io_error, "auth database: bad kind " + r.text(0));
  }
  a.kind = *kind;
  a.name = r.text(1);
  a.hash = r.text(2);
  const std::string& progs = r.text(3);
  if (progs == "*") {
    a.all_programs = true;
  } else {
    boost::system::error_code ec;
    auto v = json::parse(progs, ec);
    if (ec || !v.is_array()) {
      return make_error(errc::io_error, "auth database: bad programs of " + a.name);
    }
    for (auto& p : v.as_array()) {
      auto id = p.is_string() ? program_id::parse(std::string_view(p.as_string())) : std::nullopt;
      if (!id) {
        return make_error(errc::io_error, "auth database: bad program of " + a.name);
      }
      a.programs.push_back(*id);
    }
  }
  a.station = r.text(4);
  return a;
}

// What a sealed value is bound to: its table and row.
std::string seed_context(const std::string& kid) {
  return "auth_keys/" + kid;
}
std::string station_context(std::string_view station) {
  return "auth_station_keys/" + std::string(station);
}

std::vector<db::value> params_of(const account& a) {
  return {std::string(to_string(a.kind)), a.name, a.hash, encode_programs(a), a.station};
}

}  // namespace

std::string_view account_collection(token_kind k) {
  switch (k) {
    case token_kind::viewer:
      return "subscribers";
    case token_kind::engine:
      return "engines";
    case token_kind::operator_:
      return "operators";
  }
  return "subscribers";
}

std::optional<token_kind> parse_account_collection(std::string_view s) {
  if (s == "subscribers") {
    return token_kind::viewer;
  }
  if (s == "engines") {
    return token_kind::engine;
  }
  if (s == "operators") {
    return token_kind::operator_;
  }
  return std::nullopt;
}

result<std::unique_ptr<auth_store>> auth_store::open(std::string_view url) {
  auto c = db::open(url);
  if (!c) {
    return c.err();
  }
  auto& conn = **c;
  auto st = db::in_transaction(conn, [&]() -> status { return conn.exec_script(schema); });
  if (!st) {
    return st.err();
  }
  return std::make_unique<auth_store>(std::move(*c));
}

status auth_store::put_account(const account& a) {
  auto r = c_->exec(
      "INSERT INTO auth_accounts (kind, name, hash, programs, station) VALUES ($1, $2, $3, $4, $5) "
      "ON CONFLICT (kind, name) DO UPDATE SET hash = excluded.hash, programs = excluded.programs, "
      "station = excluded.station",
      params_of(a));
  if (!r) {
    return r.err();
  }
  return {};
}

result<bool> auth_store::add_account_if_missing(const account& a) {
  auto r = c_->exec(
      "INSERT INTO auth_accounts (kind, name, hash, programs, station) VALUES ($1, $2, $3, $4, $5) "
      "ON CONFLICT (kind, name) DO NOTHING",
      params_of(a));
  if (!r) {
    return r.err();
  }
  return *r > 0;
}

result<std::optional<account>> auth_store::find_account(token_kind kind, std::string_view name) {
  auto rows = c_->query(
      "SELECT kind, name, hash, programs, station FROM auth_accounts WHERE kind = $1 AND name = $2",
      {std::string(to_string(kind)), std::string(name)});
  if (!rows) {
    return rows.err();
  }
  if (rows->empty()) {
    return std::optional<account>();
  }
  auto a = decode_row(rows->front());
  if (!a) {
    return a.err();
  }
  return std::optional<account>(std::move(*a));
}

result<std::vector<account>> auth_store::list_accounts() {
  auto rows = c_->query(
      "SELECT kind, name, hash, programs, station FROM auth_accounts ORDER BY kind, name");
  if (!rows) {
    return rows.err();
  }
  std::vector<account> out;
  for (auto& r : *rows) {
    auto a = decode_row(r);
    if (!a) {
      return a.err();
    }
    out.push_back(std::move(*a));
  }
  return out;
}

result<bool> auth_store::delete_account(token_kind kind, std::string_view name) {
  auto r = c_->exec("DELETE FROM auth_accounts WHERE kind = $1 AND name = $2",
                    {std::string(to_string(kind)), std::string(name)});
  if (!r) {
    return r.err();
  }
  return *r > 0;
}

result<std::vector<key_entry>> auth_store::load_keys() {
  auto rows = c_->query("SELECT kid, seed, created_at, signing_until FROM auth_keys");
  if (!rows) {
    return rows.err();
  }
  std::vector<key_entry> out;
  for (auto& r : *rows) {
    VODGRID_TRY(auto seed, opened(r.bytes(1), seed_context(r.text(0))));
    out.push_back(key_entry{r.text(0), std::move(seed), r.i64(2), r.i64(3)});
  }
  return out;
}

result<std::string> auth_store::opened(const std::string& stored,
                                       const std::string& context) const {
  if (!key_sealer::is_sealed(stored)) {
    if (sealer_) {
      return make_error(errc::internal, "auth database: " + context + " is not sealed");
    }
    return stored;
  }
  if (!sealer_) {
    return make_error(errc::forbidden,
                      "auth database: " + context + " is sealed and no key file was given");
  }
  auto plain = sealer_->open(stored, context);
  if (!plain) {
    return make_error(errc::forbidden, "auth database: " + context +
                                           " does not open with the key file (the database's "
                                           "key-encryption key is another one)");
  }
  return plain;
}

std::string auth_store::sealed(std::string_view plain, const std::string& context) const {
  return sealer_ ? sealer_->seal(plain, context) : std::string(plain);
}

result<bool> auth_store::has_sealed_keys() {
  for (const char* sql : {"SELECT seed FROM auth_keys", "SELECT secret FROM auth_station_keys"}) {
    VODGRID_TRY(auto rows, c_->query(sql));
    for (auto& r : rows) {
      if (key_sealer::is_sealed(r.bytes(0))) {
        return true;
      }
    }
  }
  return false;
}

result<size_t> auth_store::seal_plaintext_keys() {
  size_t n = 0;
  auto st = db::in_transaction(*c_, [&]() -> status {
    n = 0;
    VODGRID_TRY(auto keys, c_->query("SELECT kid, seed FROM auth_keys"));
    for (auto& r : keys) {
      if (!key_sealer::is_sealed(r.bytes(1))) {
        auto s = sealer_->seal(r.bytes(1), seed_context(r.text(0)));
        VODGRID_TRY(
            c_->exec("UPDATE auth_keys SET seed = $1 WHERE kid = $2", {db::blob{s}, r.text(0)}));
        ++n;
      }
    }
    VODGRID_TRY(auto stations, c_->query("SELECT station, secret FROM auth_station_keys"));
    for (auto& r : stations) {
      if (!key_sealer::is_sealed(r.bytes(1))) {
        auto s = sealer_->seal(r.bytes(1), station_context(r.text(0)));
        VODGRID_TRY(c_->exec("UPDATE auth_station_keys SET secret = $1 WHERE station = $2",
                             {db::blob{s}, r.text(0)}));
        ++n;
      }
    }
    return {};
  });
  if (!st) {
    return st.err();
  }
  return n;
}

status auth_store::save_keys(const std::vector<key_entry>& changed,
                             const std::vector<std::string>& removed) {
  return db::in_transaction(*c_, [&]() -> status {
    for (auto& e : changed) {
      auto r = c_->exec(
          "INSERT INTO auth_keys (kid, seed, created_at, signing_until) VALUES ($1, $2, $3, $4) "
          "ON CONFLICT (kid) DO UPDATE SET signing_until = excluded.signing_until",
          {e.kid, db::blob{sealed(e.seed, seed_context(e.kid))}, e.created_at, e.signing_until});
      if (!r) {
        return r.err();
      }
    }
    for (auto& kid : removed) {
      auto r = c_->exec("DELETE FROM auth_keys WHERE kid = $1", {kid});
      if (!r) {
        return r.err();
      }
    }
    return {};
  });
}

result<std::string> auth_store::station_key(std::string_view station) {
  auto ins = c_->exec(
      "INSERT INTO auth_station_keys (station, secret) VALUES ($1, $2) ON CONFLICT (station) DO "
      "NOTHING",
      {std::string(station), db::blob{sealed(new_station_key(), station_context(station))}});
  if (!ins) {
    return ins.err();
  }
  auto rows =
      c_->query("SELECT secret FROM auth_station_keys WHERE station = $1", {std::string(station)});
  if (!rows) {
    return rows.err();
  }
  if (rows->empty()) {
    return make_error(errc::internal, "station key vanished");
  }
  return opened(rows->front().bytes(0), station_context(station));
}

}  // namespace vodgrid::auth
