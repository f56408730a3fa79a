// The auth daemon's handlers. Every database touch, signature and password hash runs on db_pool;
// handlers decode and check their input on the io thread first, so bad input changes nothing.
#include "auth/daemon.h"

#include <boost/asio/thread_pool.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <iostream>
#include <optional>

#include <fmt/format.h>

#include "auth/client.h"
#include "auth/keys.h"
#include "auth/sealed.h"
#include "auth/store.h"
#include "auth/verifier.h"
#include "base/fs.h"
#include "base/log.h"
#include "net/daemon.h"
#include "net/http.h"
#include "net/run_on.h"

namespace vodgrid::auth {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using net::reply;
using net::request_context;

namespace {

reply bad_request(std::string detail) {
  return net::error_reply(make_error(errc::invalid_argument, std::move(detail)));
}

// A JSON object body whose keys are all in `allowed`.
result<json::object> body_object(const request_context& ctx,
                                 std::initializer_list<std::string_view> allowed) {
  boost::system::error_code ec;
  json::value v = json::parse(ctx.req.body(), ec);
  if (ec || !v.is_object()) {
    return make_error(errc::invalid_argument, "the body must be a JSON object");
  }
  for (auto& kv : v.as_object()) {
    if (std::find(allowed.begin(), allowed.end(), kv.key()) == allowed.end()) {
      return make_error(errc::invalid_argument, "unknown field '" + std::string(kv.key()) + "'");
    }
  }
  return std::move(v.as_object());
}

result<std::string> string_field(const json::object& o, std::string_view key, size_t max_len) {
  auto* v = o.if_contains(key);
  if (!v || !v->is_string() || v->as_string().empty() || v->as_string().size() > max_len) {
    return make_error(errc::invalid_argument, "'" + std::string(key) +
                                                  "' must be a string of 1 to " +
                                                  std::to_string(max_len) + " bytes");
  }
  return std::string(v->as_string());
}

// A refusal that tells the client when to come back: Retry-After in whole seconds, and the same
// in the JSON body.
reply retry_later(http::status status, std::string_view code, std::string_view detail,
                  std::chrono::seconds wait) {
  auto r = net::json_reply(
      json::object{{"error", code},
                   {"detail", fmt::format("{}: retry in {} s", detail, wait.count())},
                   {"retry_after", wait.count()}},
      status);
  r.headers.emplace_back("Retry-After", std::to_string(wait.count()));
  return r;
}

// A hash that no password matches, verified when the account does not exist so that a login for
// an unknown name costs as much as one for a known name.
const std::string& dummy_hash(password_cost cost) {
  static const std::string h = *hash_password("vodgrid-no-such-account", cost);
  return h;
}

// The file of a sqlite: database URL (as db::open reads it); empty for any other database.
std::filesystem::path sqlite_file(std::string_view url) {
  if (!url.starts_with("sqlite:") || url == "sqlite::memory:") {
    return {};
  }
  url.remove_prefix(7);
  if (url.starts_with("//")) {
    url.remove_prefix(2);
  }
  return std::filesystem::path(url);
}

// A SQLite auth database is made 0600 in a 0700 folder before SQLite opens it (its -wal and -shm
// take the database's mode), and refused when group or others may read it or its journal files.
status protect_database_file(const std::filesystem::path& file) {
  if (file.has_parent_path()) {
    VODGRID_TRY(make_private_dir(file.parent_path()));
  }
  VODGRID_TRY(create_private_file(file));
  for (const char* suffix : {"", "-wal", "-shm"}) {
    auto f = file;
    f += suffix;
    if (auto st = check_private_file(f); !st && st.err().code != errc::not_found) {
      return st;
    }
  }
  return {};
}

// The key-encryption key: read from its file, or made when the database holds no sealed key yet
// (a missing file is never replaced while sealed keys need the old one).
result<std::shared_ptr<const key_sealer>> load_sealer(auth_store& store,
                                                      const std::filesystem::path& file) {
  auto k = key_sealer::load(file);
  if (!k && k.err().code == errc::not_found) {
    VODGRID_TRY(auto sealed, store.has_sealed_keys());
    if (sealed) {
      return make_error(errc::not_found, "the auth database's keys are sealed with the key in " +
                                             file.string() + ", which is missing: restore it");
    }
    k = key_sealer::create(file);
  }
  if (!k) {
    return k.err();
  }
  return std::make_shared<const key_sealer>(std::move(*k));
}

// [auth].key_file, or auth.key beside a SQLite database.
result<std::filesystem::path> key_file_of(const auth_config& cfg) {
  if (!cfg.key_file.empty()) {
    return cfg.key_file;
  }
  auto db = sqlite_file(cfg.database);
  if (db.empty()) {
    return make_error(errc::invalid_argument,
                      "[auth]: a PostgreSQL database needs 'key_file' (the key that seals its "
                      "signing keys, kept apart from the database)");
  }
  return db.parent_path() / "auth.key";
}

}  // namespace

struct auth_daemon::impl : net::daemon_base {
  grid_config grid;
  auth_options opts;
  std::shared_ptr<spdlog::logger> logger = log::get("auth");
  asio::thread_pool db_pool{1};
  std::unique_ptr<auth_store> store;          // db thread only (and start)
  std::unique_ptr<keyring> keys;              // db thread only (and start)
  std::shared_ptr<token_verifier> verifier =  // any thread
      std::make_shared<token_verifier>();
  std::string issuer;

  login_throttle throttle{opts.throttle};   // any thread
  std::atomic<uint32_t> pending_checks{0};  // password checks queued or running on db_pool

  net::metric_value* logins = nullptr;
  net::metric_value* refusals = nullptr;
  net::metric_value* throttled = nullptr;
  net::metric_value* shed = nullptr;
  net::metric_value* rotations = nullptr;

  impl(asio::io_context& i, grid_config g, auth_options o)
      : daemon_base(i), grid(std::move(g)), opts(o) {}
  ~impl() { db_pool.join(); }

  int64_t retire_after() const {
    return std::max({opts.viewer_ttl, opts.engine_ttl, opts.operator_ttl}) + 60;
  }

  // Runs `f` on the database thread and resumes on the io thread.
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> on_db(F f) {
    return net::run_on(db_pool, std::move(f), errc::io_error, "auth: ");
  }

  // db thread: persists a key change and publishes the keys to our own verifier.
  status keys_changed(const std::vector<key_entry>& changed, const std::vector<std::string>& gone) {
    if (auto st = store->save_keys(changed, gone); !st) {
      return st;
    }
    verifier->set_keys(keys->published());
    return {};
  }

  // db thread: rotates when the signing key is older than rotate_every; retires old keys.
  status housekeep(int64_t now) {
    std::vector<key_entry> changed;
    if (keys->empty() || keys->entries().back().created_at + opts.rotate_every <= now) {
      changed = keys->rotate(now);
    }
    auto gone = keys->retire(now);
    if (changed.empty() && gone.empty()) {
      return {};
    }
    return keys_changed(changed, gone);
  }

  claims claims_for(const account& a, int64_t now, std::string address) const {
    claims c;
    c.issuer = issuer;
    c.subject = a.name;
    c.kind = a.kind;
    c.all_programs = a.kind != token_kind::viewer || a.all_programs;
    if (a.kind == token_kind::viewer && !a.all_programs) {
      c.programs = a.programs;
    }
    c.issued_at = now;
    int64_t ttl = a.kind == token_kind::viewer   ? opts.viewer_ttl
                  : a.kind == token_kind::engine ? opts.engine_ttl
                                                 : opts.operator_ttl;
    c.expires_at = now + ttl;
    c.address = std::move(address);
    c.station = a.kind == token_kind::engine ? a.station : std::string();
    return c;
  }

  // db thread: the login reply for an account whose credentials were checked.
  result<login_reply> issue(const account& a, std::string address) {
    int64_t now = unix_now();
    claims c = claims_for(a, now, std::move(address));
    login_reply r;
    r.token = keys->signer().issue(c);
    r.kind = c.kind;
    r.subject = c.subject;
    r.expires_at = c.expires_at;
    if (a.kind == token_kind::engine) {
      auto k = store->station_key(a.station);
      if (!k) {
        return k.err();
      }
      r.station = a.station;
      r.station_key = std::move(*k);
    }
    return r;
  }

  // The operator token of a request, or the reply refusing it.
  std::optional<reply> require_operator(const request_context& ctx) const {
    requirement req{token_kind::operator_, std::nullopt, client_address(ctx)};
    auto v = verifier->verify(token_of(ctx), req);
    if (!v) {
      refusals->inc();
      return net::error_reply(v.as_error());
    }
    return std::nullopt;
  }

  asio::awaitable<void> housekeeping_loop();
  void routes();
  asio::awaitable<reply> login(request_context& ctx, token_kind kind);
  // On the database thread: the account's password checked, the token issued.
  asio::awaitable<result<login_reply>> check_login(token_kind kind, std::string user,
                                                   std::string password, std::string address);
  asio::awaitable<reply> renew(request_context& ctx);
  asio::awaitable<reply> get_keys(request_context& ctx);
  asio::awaitable<reply> rotate(request_context& ctx);
  asio::awaitable<reply> list_accounts(request_context& ctx);
  asio::awaitable<reply> put_account(request_context& ctx);
  asio::awaitable<reply> delete_account(request_context& ctx);
};

auth_daemon::auth_daemon(asio::io_context& io, grid_config grid, auth_options opts)
    : impl_(std::make_unique<impl>(io, std::move(grid), opts)) {}

// Its further loops end before its state goes (net::daemon_base::end_loops).
auth_daemon::~auth_daemon() {
  impl_->end_loops();
}

uint16_t auth_daemon::port() const {
  return impl_->port;
}

status auth_daemon::start() {
  auto& d = *impl_;
  if (!d.grid.auth) {
    return make_error(errc::invalid_argument, "the config has no [auth]");
  }
  auto& cfg = *d.grid.auth;
  d.issuer = cfg.listen.url();
  VODGRID_TRY(auto key_file, key_file_of(cfg));
  if (auto file = sqlite_file(cfg.database); !file.empty()) {
    VODGRID_TRY(protect_database_file(file));
  }
  auto store = auth_store::open(cfg.database);
  if (!store) {
    return store.err();
  }
  d.store = std::move(*store);
  VODGRID_TRY(auto sealer, load_sealer(*d.store, key_file));
  d.store->set_sealer(std::move(sealer));
  VODGRID_TRY(auto migrated, d.store->seal_plaintext_keys());
  if (migrated > 0) {
    d.logger->info("auth: sealed {} plaintext keys of the database with {}", migrated,
                   key_file.string());
  }
  d.keys = std::make_unique<keyring>(d.retire_after());
  auto entries = d.store->load_keys();
  if (!entries) {
    return entries.err();
  }
  if (auto st = d.keys->load(std::move(*entries)); !st) {
    return st;
  }
  if (auto st = d.housekeep(unix_now()); !st) {
    return st;
  }
  d.verifier->set_keys(d.keys->published());
  if (cfg.demo_accounts) {
    auto demo_hash = hash_password("demo", d.opts.cost);
    auto admin_hash = hash_password("admin", d.opts.cost);
    if (!demo_hash || !admin_hash) {
      return make_error(errc::internal, "cannot hash the demo passwords");
    }
    account demo{token_kind::viewer, "demo", *demo_hash, true, {}, {}};
    account admin{token_kind::operator_, "admin", *admin_hash, true, {}, {}};
    for (auto* a : {&demo, &admin}) {
      if (auto r = d.store->add_account_if_missing(*a); !r) {
        return r.err();
      }
    }
    std::cout << "demo accounts: subscriber demo/demo (all programs), operator admin/admin"
              << std::endl;
  }
  net::server_options sopts;
  sopts.metrics_from = d.grid.metrics_ranges();
  d.server = std::make_unique<net::http_server>(d.io.get_executor(), "auth", sopts);
  d.routes();
  if (auto st = d.listen(cfg.listen); !st) {
    return st;
  }
  d.tasks.spawn(d.housekeeping_loop());
  d.logger->info("auth: listening on {}:{}, database {}, signing key {}", cfg.listen.host, d.port,
                 d.store->connection().kind() == db::dialect::sqlite ? "SQLite" : "PostgreSQL",
                 d.keys->signer().kid());
  return {};
}

asio::awaitable<void> auth_daemon::stop(std::chrono::milliseconds drain) {
  co_await impl_->stop(drain);
}

asio::awaitable<void> auth_daemon::impl::housekeeping_loop() {
  // Not `while (!co_await ...)`: GCC 12 miscompiles a co_await in a loop condition.
  while (true) {
    if (co_await stop_requested.wait_for(opts.housekeeping)) {
      break;
    }
    // A named lambda: GCC 12 mishandles a lambda temporary inside co_await.
    auto job = [this] { return housekeep(unix_now()); };
    auto st = co_await on_db(std::move(job));
    if (!st) {
      logger->warn("auth: key housekeeping failed: {}", st.err().detail);
    }
  }
}

void auth_daemon::impl::routes() {
  using V = http::verb;
  auto login_as = [this](token_kind kind) {
    return [this, kind](request_context& c) { return login(c, kind); };
  };
  server->route(V::post, "/v1/login/viewer", login_as(token_kind::viewer));
  server->route(V::post, "/v1/login/operator", login_as(token_kind::operator_));
  server->route(V::post, "/v1/login/engine", login_as(token_kind::engine));
  route(V::post, "/v1/token/renew", &impl::renew);
  route(V::get, "/v1/keys", &impl::get_keys);
  route(V::post, "/v1/keys/rotate", &impl::rotate);
  route(V::get, "/v1/accounts", &impl::list_accounts);
  route(V::put, "/v1/accounts/{}/{}", &impl::put_account);
  route(V::delete_, "/v1/accounts/{}/{}", &impl::delete_account);
  server->set_health([this] {
    return json::object{{"role", "auth"}, {"keys", verifier->keys().size()}};
  });
  auto& m = server->metrics();
  logins = &m.counter("vodgrid_auth_logins_total", "Tokens issued by logins and renewals");
  refusals = &m.counter("vodgrid_auth_refusals_total", "Logins and operator calls refused");
  rotations = &m.counter("vodgrid_auth_key_rotations_total", "Signing keys rotated by operators");
  throttled = &m.counter("vodgrid_auth_logins_throttled_total",
                         "Logins refused (429) by the back-off of an account or address");
  shed = &m.counter("vodgrid_auth_logins_shed_total",
                    "Logins refused (503) because too many password checks were waiting");
}

asio::awaitable<reply> auth_daemon::impl::login(request_context& ctx, token_kind kind) {
  bool engine = kind == token_kind::engine;
  auto o = engine ? body_object(ctx, {"name", "secret"})
                  : body_object(ctx, {"user", "password", "bind_address"});
  if (!o) {
    co_return net::error_reply(o.err());
  }
  auto user = string_field(*o, engine ? "name" : "user", 64);
  auto password = string_field(*o, engine ? "secret" : "password", max_password_bytes);
  if (!user) {
    co_return net::error_reply(user.err());
  }
  if (!password) {
    co_return net::error_reply(password.err());
  }
  if (!valid_name(*user)) {
    co_return bad_request("the name must be 1..64 characters of [A-Za-z0-9_-]");
  }
  std::string address;
  if (auto* b = o->if_contains("bind_address")) {
    if (!b->is_bool()) {
      co_return bad_request("'bind_address' must be true or false");
    }
    if (b->as_bool()) {
      address = client_address(ctx);
    }
  }
  // Throttled before any work: the account as submitted (whether it exists or not) and the
  // client's address; then the bounded queue of password checks.
  auto peer = client_address(ctx);
  auto account_key = std::string(to_string(kind)) + "/" + *user;
  if (auto wait = throttle.begin(account_key, peer)) {
    throttled->inc();
    co_return retry_later(http::status::too_many_requests, "too_many_requests",
                          "too many failed logins for this account or address", *wait);
  }
  if (pending_checks.fetch_add(1) >= opts.max_pending_checks) {
    pending_checks.fetch_sub(1);
    throttle.finish(account_key, peer, login_throttle::outcome::error);
    shed->inc();
    co_return retry_later(http::status::service_unavailable, "unavailable",
                          "too many logins are being checked", std::chrono::seconds(1));
  }
  auto r = co_await check_login(kind, *user, *password, address);
  pending_checks.fetch_sub(1);
  bool bad = !r && r.err().code == errc::unauthorized;
  throttle.finish(account_key, peer,
                  r     ? login_throttle::outcome::good
                  : bad ? login_throttle::outcome::bad
                        : login_throttle::outcome::error);
  if (!r) {
    refusals->inc();
    logger->info("auth: {} login of '{}' from {} refused: {}", to_string(kind), *user, peer,
                 r.err().detail);
    co_return net::error_reply(r.err());
  }
  logins->inc();
  net::reply rep;
  rep.body = encode_login_reply(*r);
  co_return rep;
}

asio::awaitable<result<login_reply>> auth_daemon::impl::check_login(token_kind kind,
                                                                    std::string user,
                                                                    std::string password,
                                                                    std::string address) {
  auto cost = opts.cost;
  // A named lambda: GCC 12 mishandles a lambda temporary inside co_await.
  auto job = [this, kind, cost, user = std::move(user), password = std::move(password),
              address = std::move(address)]() -> result<login_reply> {
    auto a = store->find_account(kind, user);
    if (!a) {
      return a.err();
    }
    if (!*a) {
      (void)verify_password(dummy_hash(cost), password);
      return make_error(errc::unauthorized, "bad name or password");
    }
    if (!verify_password((*a)->hash, password)) {
      return make_error(errc::unauthorized, "bad name or password");
    }
    return issue(**a, address);
  };
  co_return co_await on_db(std::move(job));
}

asio::awaitable<reply> auth_daemon::impl::renew(request_context& ctx) {
  auto text = std::string(token_of(ctx));
  auto parsed = parse_token(text);
  if (!parsed) {
    refusals->inc();
    co_return net::error_reply(text.empty() ? to_error(token_error::missing)
                                            : to_error(token_error::malformed));
  }
  requirement req{parsed->body.kind, std::nullopt, client_address(ctx)};
  auto v = verifier->verify(text, req);
  if (!v) {
    refusals->inc();
    co_return net::error_reply(v.as_error());
  }
  claims old = *v.ok;
  // A named lambda: GCC 12 mishandles a lambda temporary inside co_await.
  auto job = [this, old]() -> result<login_reply> {
    auto a = store->find_account(old.kind, old.subject);
    if (!a) {
      return a.err();
    }
    if (!*a) {
      return make_error(errc::forbidden, "the account is gone");
    }
    return issue(**a, old.address);
  };
  auto r = co_await on_db(std::move(job));
  if (!r) {
    refusals->inc();
    co_return net::error_reply(r.err());
  }
  logins->inc();
  net::reply rep;
  rep.body = encode_login_reply(*r);
  co_return rep;
}

asio::awaitable<reply> auth_daemon::impl::get_keys(request_context&) {
  net::reply rep;
  rep.body = encode_keys(issuer, verifier->keys());
  co_return rep;
}

asio::awaitable<reply> auth_daemon::impl::rotate(request_context& ctx) {
  if (auto refused = require_operator(ctx)) {
    co_return *refused;
  }
  // A named lambda: GCC 12 mishandles a lambda temporary inside co_await.
  auto job = [this]() -> result<std::string> {
    int64_t now = unix_now();
    auto changed = keys->rotate(now);
    auto gone = keys->retire(now);
    if (auto st = keys_changed(changed, gone); !st) {
      return st.err();
    }
    return keys->signer().kid();
  };
  auto r = co_await on_db(std::move(job));
  if (!r) {
    co_return net::error_reply(r.err());
  }
  rotations->inc();
  logger->info("auth: keys rotated by {}; signing key {}", client_address(ctx), *r);
  co_return net::json_reply(json::object{{"kid", *r}});
}

asio::awaitable<reply> auth_daemon::impl::list_accounts(request_context& ctx) {
  if (auto refused = require_operator(ctx)) {
    co_return *refused;
  }
  // A named lambda: GCC 12 mishandles a lambda temporary inside co_await.
  auto job = [this] { return store->list_accounts(); };
  auto r = co_await on_db(std::move(job));
  if (!r) {
    co_return net::error_reply(r.err());
  }
  json::array out;
  for (auto& a : *r) {
    json::object o{{"kind", account_collection(a.kind)}, {"name", a.name}};
    if (a.kind == token_kind::viewer) {
      if (a.all_programs) {
        o["programs"] = "*";
      } else {
        json::array p;
        for (auto& id : a.programs) {
          p.push_back(json::value(id.str()));
        }
        o["programs"] = std::move(p);
      }
    }
    if (a.kind == token_kind::engine) {
      o["station"] = a.station;
    }
    out.push_back(std::move(o));
  }
  co_return net::json_reply(json::object{{"accounts", std::move(out)}});
}

asio::awaitable<reply> auth_daemon::impl::put_account(request_context& ctx) {
  if (auto refused = require_operator(ctx)) {
    co_return *refused;
  }
  auto kind = parse_account_collection(ctx.params[0]);
  if (!kind) {
    co_return net::error_reply(
        make_error(errc::not_found, "accounts are subscribers, engines or operators"));
  }
  if (!valid_name(ctx.params[1])) {
    co_return bad_request("the name must be 1..64 characters of [A-Za-z0-9_-]");
  }
  auto o = body_object(ctx, {"password", "programs", "station"});
  if (!o) {
    co_return net::error_reply(o.err());
  }
  auto password = string_field(*o, "password", max_password_bytes);
  if (!password) {
    co_return net::error_reply(password.err());
  }
  account a;
  a.kind = *kind;
  a.name = ctx.params[1];
  auto* programs = o->if_contains("programs");
  if (*kind == token_kind::viewer) {
    if (!programs) {
      co_return bad_request("a subscriber needs 'programs': \"*\" or a list of program ids");
    }
    if (programs->is_string() && programs->as_string() == "*") {
      a.all_programs = true;
    } else if (programs->is_array() && programs->as_array().size() <= max_entitlements) {
      for (auto& p : programs->as_array()) {
        auto id = p.is_string() ? program_id::parse(std::string_view(p.as_string())) : std::nullopt;
        if (!id) {
          co_return bad_request("'programs' holds a bad program id");
        }
        a.programs.push_back(*id);
      }
    } else {
      co_return bad_request("'programs' must be \"*\" or a list of at most 256 program ids");
    }
  } else if (programs) {
    co_return bad_request("only subscribers have 'programs'");
  }
  auto* station = o->if_contains("station");
  if (*kind == token_kind::engine) {
    if (!station || !station->is_string() || !valid_name(std::string_view(station->as_string()))) {
      co_return bad_request("an engine needs 'station': the station it belongs to");
    }
    a.station = std::string(station->as_string());
  } else if (station) {
    co_return bad_request("only engines have 'station'");
  }
  auto cost = opts.cost;
  // A named lambda: GCC 12 mishandles a lambda temporary inside co_await.
  auto job = [this, a, cost, password = *password]() mutable -> status {
    auto h = hash_password(password, cost);
    if (!h) {
      return h.err();
    }
    a.hash = std::move(*h);
    return store->put_account(a);
  };
  auto r = co_await on_db(std::move(job));
  if (!r) {
    co_return net::error_reply(r.err());
  }
  logger->info("auth: account {}/{} set", ctx.params[0], ctx.params[1]);
  co_return net::json_reply(json::object{{"kind", ctx.params[0]}, {"name", ctx.params[1]}});
}

asio::awaitable<reply> auth_daemon::impl::delete_account(request_context& ctx) {
  if (auto refused = require_operator(ctx)) {
    co_return *refused;
  }
  auto kind = parse_account_collection(ctx.params[0]);
  if (!kind || !valid_name(ctx.params[1])) {
    co_return net::error_reply(make_error(errc::not_found, "no such account"));
  }
  // A named lambda: GCC 12 mishandles a lambda temporary inside co_await.
  auto job = [this, k = *kind, name = ctx.params[1]] { return store->delete_account(k, name); };
  auto r = co_await on_db(std::move(job));
  if (!r) {
    co_return net::error_reply(r.err());
  }
  if (!*r) {
    co_return net::error_reply(make_error(errc::not_found, "no such account"));
  }
  logger->info("auth: account {}/{} deleted", ctx.params[0], ctx.params[1]);
  co_return net::json_reply(json::object{{"deleted", true}});
}

}  // namespace vodgrid::auth
