// The PostgreSQL backend on libpq: one connection, PQexecParams with typed text parameters (blobs
// in binary), results in text decoded by each column's type.
#include <libpq-fe.h>

#include <fmt/format.h>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "base/log.h"
#include "db/backend.h"

namespace vodgrid::db::detail {

namespace {

// Type OIDs from PostgreSQL's catalog/pg_type.h (a server header that libpq does not ship).
constexpr Oid bool_oid = 16;
constexpr Oid bytea_oid = 17;
constexpr Oid int8_oid = 20;
constexpr Oid int2_oid = 21;
constexpr Oid int4_oid = 23;
constexpr Oid oid_oid = 26;
constexpr Oid float4_oid = 700;
constexpr Oid float8_oid = 701;
constexpr Oid numeric_oid = 1700;

struct result_deleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using pg_result = std::unique_ptr<PGresult, result_deleter>;

std::string trimmed(const char* s) {
  std::string m = s != nullptr ? s : "";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) {
    m.pop_back();
  }
  return m;
}

void log_notice(void*, const char* message) {
  log::get("db")->debug("postgresql: {}", trimmed(message));
}

// SQLSTATE classes: 23 integrity, 40001 serialization, 40P01 deadlock → conflict; 08 connection,
// 57P0x shutdown → unavailable; 53100 disk full → no_space.
errc classify(std::string_view state) {
  if (state == "40001" || state == "40P01" || state.starts_with("23")) {
    return errc::conflict;
  }
  if (state.starts_with("08") || state.starts_with("57P0")) {
    return errc::unavailable;
  }
  if (state == "53100") {
    return errc::no_space;
  }
  return errc::io_error;
}

std::string format_double(double d) {
  if (std::isnan(d)) {
    return "NaN";
  }
  if (std::isinf(d)) {
    return d > 0 ? "Infinity" : "-Infinity";
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest exact form
  return std::string(buf, end);
}

double parse_double(std::string_view s) {
  double d = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec == std::errc::result_out_of_range) {
    return s.starts_with("-") ? -std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::infinity();
  }
  return d;
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

value read_column(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) {
    return std::monostate{};
  }
  const char* p = PQgetvalue(r, row, col);
  std::string_view s(p, static_cast<size_t>(PQgetlength(r, row, col)));
  switch (PQftype(r, col)) {
    case bool_oid:
      return int64_t{s == "t" ? 1 : 0};
    case int2_oid:
    case int4_oid:
    case int8_oid:
    case oid_oid:
      return parse_int(s).value_or(0);
    case float4_oid:
    case float8_oid:
      return parse_double(s);
    case numeric_oid:
      // Whole numbers (SUM of BIGINTs) as integers, as SQLite's NUMERIC affinity keeps them.
      if (auto i = parse_int(s)) {
        return *i;
      }
      return parse_double(s);
    case bytea_oid: {
      size_t n = 0;
      unsigned char* bytes = PQunescapeBytea(reinterpret_cast<const unsigned char*>(p), &n);
      if (bytes == nullptr) {
        throw std::bad_alloc();
      }
      blob b{std::string(reinterpret_cast<const char*>(bytes), n)};
      PQfreemem(bytes);
      return b;
    }
    default:
      return std::string(s);
  }
}

class pg_connection final : public connection {
 public:
  explicit pg_connection(PGconn* c) : conn_(c) { PQsetNoticeProcessor(conn_, log_notice, nullptr); }
  ~pg_connection() override { PQfinish(conn_); }
  pg_connection(const pg_connection&) = delete;
  pg_connection& operator=(const pg_connection&) = delete;

  dialect kind() const override { return dialect::postgresql; }

  // Commit durability needs synchronous_commit: `off` is the one setting that acknowledges a
  // commit before its WAL is flushed, so it is turned back on (the stronger remote_* stay).
  status setup_session() {
    // Straight through libpq: this runs inside usable(), before any guard of a lost transaction.
    pg_result r(PQexec(conn_, "SHOW synchronous_commit"));
    if (auto s = check(r.get(), false); !s) {
      return s;
    }
    if (PQntuples(r.get()) == 1 && std::strcmp(PQgetvalue(r.get(), 0, 0), "off") == 0) {
      pg_result set(PQexec(conn_, "SET synchronous_commit TO on"));
      if (auto s = check(set.get(), false); !s) {
        return s;
      }
    }
    return {};
  }

  result<int64_t> exec(std::string_view sql, const std::vector<value>& params) override {
    auto r = run(sql, params);
    if (!r) {
      return r.err();
    }
    return parse_int(PQcmdTuples(r->get())).value_or(0);
  }

  result<std::vector<row>> query(std::string_view sql, const std::vector<value>& params) override {
    auto r = run(sql, params);
    if (!r) {
      return r.err();
    }
    const PGresult* res = r->get();
    int rows = PQntuples(res);
    int cols = PQnfields(res);
    std::vector<row> out(static_cast<size_t>(rows));
    for (int i = 0; i < rows; ++i) {
      auto& o = out[static_cast<size_t>(i)].cols;
      o.reserve(static_cast<size_t>(cols));
      for (int j = 0; j < cols; ++j) {
        o.push_back(read_column(res, i, j));
      }
    }
    return out;
  }

  status exec_script(std::string_view sql) override {
    if (auto s = usable(); !s) {
      return s;
    }
    auto rw = rewrite_sql(sql, {.blob_to_bytea = true});
    bool in_tx = in_transaction();
    pg_result r(PQexec(conn_, rw.sql.c_str()));
    if (auto s = check(r.get(), in_tx); !s) {
      return s.err();
    }
    return {};
  }

  status begin() override {
    lost_tx_ = false;
    if (auto s = usable(); !s) {
      return s;
    }
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
      return make_error(errc::io_error, "postgresql: begin: a transaction is already open");
    }
    return simple("BEGIN");
  }

  status commit() override {
    if (lost_tx_) {
      lost_tx_ = false;
      return make_error(errc::unavailable,
                        "postgresql: commit: the connection was lost; the transaction is gone");
    }
    auto r = run("COMMIT", {});
    if (!r) {
      // A commit cut off by a lost connection may or may not have happened.
      return r.err();
    }
    if (std::strcmp(PQcmdStatus(r->get()), "ROLLBACK") == 0) {
      // An earlier statement failed, so the server rolled back instead.
      error e = tx_error_.value_or(error{errc::io_error, "an earlier statement failed"});
      e.detail = "postgresql: commit: rolled back after an error: " + e.detail;
      tx_error_.reset();
      return e;
    }
    tx_error_.reset();
    return {};
  }

  status rollback() override {
    lost_tx_ = false;
    tx_error_.reset();
    if (PQstatus(conn_) != CONNECTION_OK || PQtransactionStatus(conn_) == PQTRANS_IDLE) {
      return {};  // nothing to roll back: a dropped connection took the transaction with it
    }
    return simple("ROLLBACK");
  }

 private:
  status simple(const char* sql) {
    auto r = run(sql, {});
    if (!r) {
      return r.err();
    }
    return {};
  }

  // Reconnects once if the connection dropped since the last call. A transaction open at the
  // drop is gone: statements fail until rollback() (or begin()) acknowledges it.
  status usable() {
    if (PQstatus(conn_) != CONNECTION_OK) {
      PQreset(conn_);
      if (PQstatus(conn_) != CONNECTION_OK) {
        return make_error(errc::unavailable,
                          fmt::format("postgresql: reconnect: {}", trimmed(PQerrorMessage(conn_))));
      }
      if (auto s = setup_session(); !s) {
        return s;
      }
    }
    if (lost_tx_) {
      return make_error(errc::unavailable,
                        "postgresql: the connection was lost inside a transaction; roll back");
    }
    return {};
  }

  result<pg_result> run(std::string_view sql, const std::vector<value>& params) {
    if (auto s = usable(); !s) {
      return s.err();
    }
    auto rw = rewrite_sql(sql, {});
    if (auto s = check_params(rw.params, params); !s) {
      return s.err();
    }
    size_t n = params.size();
    std::vector<std::string> numbers(n);
    std::vector<const char*> values(n, nullptr);
    std::vector<int> lengths(n, 0);
    std::vector<int> formats(n, 0);
    std::vector<Oid> types(n, 0);
    for (size_t i = 0; i < n; ++i) {
      const value& v = params[i];
      if (const auto* x = std::get_if<int64_t>(&v)) {
        numbers[i] = std::to_string(*x);
        values[i] = numbers[i].c_str();
        types[i] = int8_oid;
      } else if (const auto* d = std::get_if<double>(&v)) {
        numbers[i] = format_double(*d);
        values[i] = numbers[i].c_str();
        types[i] = float8_oid;
      } else if (const auto* t = std::get_if<std::string>(&v)) {
        values[i] = t->c_str();  // type left to the server: text fits any column type
      } else if (const auto* b = std::get_if<blob>(&v)) {
        values[i] = b->bytes.data();
        lengths[i] = static_cast<int>(b->bytes.size());
        formats[i] = 1;
        types[i] = bytea_oid;
      }
    }
    bool in_tx = in_transaction();
    pg_result r(PQexecParams(conn_, rw.sql.c_str(), static_cast<int>(n), types.data(),
                             values.data(), lengths.data(), formats.data(), 0));
    if (auto s = check(r.get(), in_tx); !s) {
      return s.err();
    }
    return r;
  }

  bool in_transaction() const { return PQtransactionStatus(conn_) != PQTRANS_IDLE; }

  // Maps a failed result onto an error; `in_tx`: whether a transaction was open before the call,
  // to be marked lost if the call lost the connection.
  status check(const PGresult* r, bool in_tx) {
    auto st = r != nullptr ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
      return {};
    }
    bool connected = PQstatus(conn_) == CONNECTION_OK;
    const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    std::string msg = trimmed(r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
    if (msg.empty()) {
      msg = trimmed(PQerrorMessage(conn_));
    }
    errc code = !connected         ? errc::unavailable
                : state != nullptr ? classify(state)
                                   : errc::io_error;
    error e = make_error(code, "postgresql: " + msg);
    if (!connected) {
      lost_tx_ = in_tx;
    } else if (PQtransactionStatus(conn_) == PQTRANS_INERROR && !tx_error_) {
      tx_error_ = e;
    }
    return e;
  }

  PGconn* conn_;
  bool lost_tx_ = false;
  std::optional<error> tx_error_;  // the first failure inside the current transaction
};

}  // namespace

result<std::unique_ptr<connection>> open_postgresql(const std::string& url) {
  char* parse_error = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &parse_error);
  if (opts == nullptr) {
    std::string m = parse_error != nullptr ? trimmed(parse_error) : "out of memory";
    PQfreemem(parse_error);
    return make_error(errc::invalid_argument, "postgresql URL: " + m);
  }
  PQconninfoFree(opts);
  // Defaults first; the URL, expanded last, overrides them.
  const char* keys[] = {"client_encoding", "connect_timeout", "fallback_application_name", "dbname",
                        nullptr};
  const char* values[] = {"UTF8", "10", "vodgrid", url.c_str(), nullptr};
  PGconn* c = PQconnectdbParams(keys, values, 1);
  if (c == nullptr) {
    return make_error(errc::internal, "postgresql: out of memory");
  }
  if (PQstatus(c) != CONNECTION_OK) {
    std::string m = trimmed(PQerrorMessage(c));
    PQfinish(c);
    return make_error(errc::unavailable, "postgresql: connect: " + m);
  }
  auto conn = std::make_unique<pg_connection>(c);
  if (auto s = conn->setup_session(); !s) {
    return s.err();
  }
  return std::unique_ptr<connection>(std::move(conn));
}

}  // namespace vodgrid::db::detail
