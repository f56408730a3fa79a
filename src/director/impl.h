// The director daemon's state, shared by the files that implement it: director.cc (start, stop,
// routes, heartbeats), programs.cc (the catalog, programs learned from the registry), playback.cc
// (playlists, redirects, preload), copies.cc (orders, other stations' sources and holders,
// replicas, prefetch, holder), maintenance.cc (evictions, idle replicas), registry_link.cc
// (reports), placement.cc (copies per segment, repair and surplus). Private to src/director.
// Threading: every member is owned by the io thread; coroutines touch them only between awaits.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <boost/asio/ip/udp.hpp>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "api/api.h"
#include "auth/session.h"
#include "base/config.h"
#include "base/log.h"
#include "director/director.h"
#include "director/hot.h"
#include "director/push_session.h"
#include "director/tables.h"
#include "net/async_mutex.h"
#include "net/client.h"
#include "net/daemon.h"
#include "net/http.h"
#include "net/peer_list.h"
#include "net/tls.h"
#include "net/use_tuple.h"

namespace vodgrid::director {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using net::reply;
using net::request_context;
using net::use_tuple;
using tcp_endpoint = asio::ip::tcp::endpoint;

// The 302 that sends a console to an engine.
inline reply redirect_reply(std::string location) {
  reply r;
  r.status = http::status::found;
  r.location = std::move(location);
  r.no_store = true;
  r.body = "{}\n";
  return r;
}

inline constexpr std::string_view state_loading = "loading";
inline constexpr std::string_view state_ready = "ready";

// An error reply; one that may pass (errc::unavailable) tells the console when to ask again.
inline reply unavailable_reply(const error& e) {
  auto r = net::error_reply(e);
  if (e.code == errc::unavailable) {
    r.headers.emplace_back("Retry-After", "1");
  }
  return r;
}

}  // namespace vodgrid::director

namespace vodgrid::push {
struct rtsp_request;
struct rtsp_response;
}  // namespace vodgrid::push

namespace vodgrid::director {

// What an RTSP request URI names (rtsp.cc): the program, the URL its SDP and RTP-Info give, and a
// request context for the viewer-token check (query, Authorization, peer).
struct rtsp_target {
  program_id program;
  std::string base;   // rtsp://AUTHORITY/v1/programs/ID
  std::string query;  // with its '?', or ""
  net::request_context ctx;
};
result<rtsp_target> parse_rtsp_target(const push::rtsp_request& req, const tcp_endpoint& peer);

// One console's RTSP connection as its requests see it (rtsp.cc): over TLS (RTSPS) or not, and
// the interleaved sessions it carries.
struct rtsp_link;

// Where a session's stream starts (push.cc, plan_start).
struct stream_start {
  segment_key key;
  double npt_start = 0;
  double duration = 0;
  std::optional<uint64_t> offset;
  std::optional<double> seek;
  api::push_state state;
};

struct director_daemon::impl : net::daemon_base {
  grid_config grid;
  const station_config* station = nullptr;
  std::shared_ptr<spdlog::logger> logger = log::get("director");
  // Orders that engines answer at once, lookups at the registry and other directors: short
  // deadlines, so that a hung peer (a stopped process) costs a console seconds, not minutes.
  std::unique_ptr<net::http_client> client;
  // The registry's daemons (grid.registry's client_urls), through `client`; set when the grid has a
  // registry.
  std::optional<net::peer_list> registry;
  // Copy orders that answer when the copy is done (pre-positioning, repair).
  std::unique_ptr<net::http_client> copy_client;
  // With [auth]: the keys that check viewers' tokens and the station key that signs redirects.
  std::unique_ptr<auth::service_session> auth;
  // With TLS: the station's session-ticket keys (issue 17, item 2), made here at random, rotated by
  // maintenance_loop, used by the director's own port and handed to its engines with each heartbeat
  // reply (grid_config::shares_ticket_keys). In memory only. Thread-safe (net/tls.h).
  std::shared_ptr<net::ticket_keyring> tickets;
  steady::time_point next_ticket_key;  // when rotate_ticket_keys is due (home loop)
  // The watch page's logins, relayed to the auth server (web.cc): without the director's token.
  std::unique_ptr<net::http_client> login_client;
  // Where the watch page's files are (web.cc, web_root); empty: not found, the page is a 503.
  std::filesystem::path web_root;
  station_tables tables;
  std::map<program_id, api::program_manifest> catalog;
  hot_segments hot;  // console requests per segment, for operators (GET /v1/engines); any loop
  // The programs consoles may play now (ready_program's), for the redirect on any loop (issue 16):
  // published by the home loop with each save of the catalog, read by every loop.
  using ready_programs =
      std::unordered_map<std::string, std::shared_ptr<const api::program_manifest>>;
  snapshot<ready_programs> ready_view{std::make_shared<const ready_programs>()};
  void publish_programs();
  // replicas.size(), for the redirect on any loop: while there are none, it need not tell the home
  // loop that a console went to one.
  std::atomic<size_t> replica_count{0};
  void replicas_changed() { replica_count.store(replicas.size(), std::memory_order_relaxed); }
  // Work of the redirect that changes the home loop's state (a replica, a preload order), posted
  // there from another loop (run at once on the home loop); dropped once the daemon is gone.
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  template <class F>
  void at_home(F f) {
    if (server->on_home_loop()) {
      f();
    } else {
      asio::post(io, [w = std::weak_ptr<int>(alive), f = std::move(f)]() mutable {
        if (w.lock()) {
          f();
        }
      });
    }
  }

  // The link to the registry (when the grid has one): registration, reports, copies.
  bool registered = false;
  // One report in flight at a time: replies acknowledge a prefix of the changes.
  net::async_mutex report_mu{io.get_executor()};
  std::vector<api::location_change> unreported;  // changes not yet acknowledged by the registry
  std::vector<api::copy_sample> copy_samples;
  uint64_t report_seq = 0;  // the last report's api::station_report::seq
  struct pending_copy {
    explicit pending_copy(asio::io_context& io) : done(io, steady::time_point::max()) {}
    asio::steady_timer done;       // cancelled when the copy ends; waiters wait on it
    result<engine_slot> receiver;  // the engine receiving the copy, or why the copy failed
    bool finished = false;
  };
  using copies_in_flight = std::unordered_map<segment_key, std::shared_ptr<pending_copy>>;
  // Copies from another station in flight, one per segment (copy_from_other_station_shared).
  copies_in_flight other_station_copies_in_flight;
  // The station each source engine belongs to, by origin: copy samples name the station.
  std::unordered_map<std::string, station_id> station_of_origin;
  // Replicas made for load (claim 19), and when a console was last sent to each: deleted when idle.
  std::map<std::pair<segment_key, engine_slot>, steady::time_point> replicas;
  // A replica order in flight per segment: consoles that find every holder full wait for it.
  copies_in_flight replicas_in_flight;
  std::deque<segment_key> prefetch_queue;
  uint32_t copy_workers = 0;
  uint32_t prefetching = 0;       // pre-positioning copies in flight (at most parallel_copies)
  uint32_t prefetching_peak = 0;  // the most there have been at once

  // Placement (claim 18) and repair: segments being copied to bring them back to `copies`, and
  // surplus copies being dropped. See placement.cc.
  std::unordered_set<segment_key> repairing;
  std::unordered_set<segment_key> dropping;
  size_t under_replicated = 0;  // at the last placement scan
  steady::time_point next_placement{};

  // Programs learned from the registry on a console's first request (programs.cc): one lookup per
  // program at a time, and the ones the registry does not know, for a moment.
  struct pending_lookup {
    explicit pending_lookup(asio::io_context& io) : done(io, steady::time_point::max()) {}
    asio::steady_timer done;  // cancelled when the lookup ends
    status outcome;
    bool finished = false;
  };
  std::unordered_map<program_id, std::shared_ptr<pending_lookup>> lookups;
  std::unordered_map<program_id, steady::time_point> unknown_until;

  // Large heartbeats are decoded here, off the loop (director.cc, heartbeat).
  asio::thread_pool decode_pool{1};
  // An engine's heartbeats are applied one at a time, in slices of this long (issue 16, item 5);
  // different engines' interleave, so that a large inventory delays no other engine's heartbeat.
  // By engine name, home loop only.
  std::unordered_map<std::string, std::unique_ptr<net::async_mutex>> apply_mu;
  // A slice: its changes with their publication (the copies of the shards they touched, about
  // 1-2 µs a segment changed), so about a dozen changes of a delta a slice.
  static constexpr int64_t apply_slice_us = 25;
  net::metric_value* heartbeat_slices = nullptr;
  net::histogram* heartbeat_hold = nullptr;
  net::metric_value* heartbeats_decoded_off_loop = nullptr;
  net::metric_value* redirects = nullptr;
  static constexpr const char* unavailable_help =
      "Segment requests answered 503 (no engine could serve them now), by reason";
  reply refuse_segment(std::string_view reason, const error& e);
  net::metric_value* preload_orders = nullptr;
  net::metric_value* heartbeats = nullptr;
  net::metric_value* replicas_made = nullptr;
  net::metric_value* replicas_dropped = nullptr;
  net::metric_value* evictions_allowed = nullptr;
  net::metric_value* evictions_refused = nullptr;
  net::metric_value* repairs_ok = nullptr;
  net::metric_value* repairs_failed = nullptr;
  net::metric_value* surplus_dropped = nullptr;
  net::metric_value* fallbacks_copied = nullptr;
  net::metric_value* fallbacks_remote = nullptr;
  net::metric_value* programs_learned = nullptr;

  // Push streaming (DESIGN.md flow 8): rtsp.cc (the consoles' connections), push.cc (the engines').
  std::unordered_map<std::string, push_session> push_sessions;
  std::unordered_map<uint32_t, std::string> push_by_ssrc;  // receiver reports name the SSRC
  std::mt19937_64 push_rng{std::random_device{}() * 4294967296ull + std::random_device{}()};
  std::vector<asio::ip::udp::socket> rtcp_sinks;  // the server_port pair consoles report to
  uint16_t rtcp_sink_port = 0;
  net::metric_value* push_plays = nullptr;
  net::metric_value* push_handoffs = nullptr;
  net::metric_value* push_swaps = nullptr;
  net::metric_value* push_resumes = nullptr;
  net::metric_value* rtsp_errors = nullptr;

  impl(asio::io_context& i, grid_config g)
      : daemon_base(i),
        grid(std::move(g)),
        tables(grid.heartbeat_timeout, grid.heartbeat_interval) {}

  void on_stop() override {
    if (auth) {
      auth->stop();
    }
    for (auto& sink : rtcp_sinks) {
      boost::system::error_code ec;
      sink.close(ec);  // ends rtcp_sink_loop
    }
  }

  std::filesystem::path catalog_path() const {
    return station->director.data_dir / "programs.json";
  }
  status load_catalog();
  status save_catalog();
  void routes();
  void register_metrics();
  asio::awaitable<reply> heartbeat(request_context& ctx);
  // A new ticket key made (the next one), the one made last period put in use, the oldest
  // dropped: the ring holds the next key, the one in use and ticket_keys_before older ones.
  void rotate_ticket_keys();
  // Called by maintenance_loop (every 500 ms at most): a rotation every ticket_key_period.
  void rotate_ticket_keys_when_due(steady::time_point now);
  // Whether the heartbeat `ctx` of `engine` gets the station's ticket keys in its reply: only when
  // they are shared, to a token of that engine of this station (the request came over TLS).
  asio::awaitable<bool> takes_ticket_keys(const request_context& ctx, const engine_id& engine);
  void add_ticket_keys(api::heartbeat_reply& rep) const;
  asio::awaitable<reply> list_engines(request_context& ctx);
  asio::awaitable<reply> create_program(request_context& ctx);
  asio::awaitable<reply> commit_program(request_context& ctx);
  asio::awaitable<reply> delete_program(request_context& ctx);
  asio::awaitable<reply> list_programs(request_context& ctx);
  asio::awaitable<reply> get_program(request_context& ctx);
  asio::awaitable<reply> playlist(request_context& ctx);
  asio::awaitable<reply> iframe_playlist(request_context& ctx);
  // A playlist of program ctx.params[0] for a viewer entitled to it: `write` makes its text from
  // the manifest and the query carried on to each URI.
  asio::awaitable<reply> playlist_reply(request_context& ctx,
                                        result<std::string> (*write)(const api::program_manifest&,
                                                                     std::string_view));
  // The segment redirect, on the connection's loop (issue 16): redirect_now answers from what the
  // home loop publishes (the ready programs, the tables' views, the signer) when it can; nullopt:
  // the home loop must (a program to learn, keys to fetch, no engine to choose: a replica, a copy,
  // another station), and segment_at_home does, skipping what redirect_now has done.
  asio::awaitable<reply> segment(request_context& ctx);
  struct redirect_progress {
    bool token_checked = false;
    bool recorded = false;  // hot.record
  };
  std::optional<reply> redirect_now(request_context& ctx, redirect_progress& done);
  asio::awaitable<reply> segment_at_home(request_context& ctx, redirect_progress done);
  // The watch page (web.cc): the page, its static files (hls.js among them), the viewer's login.
  status open_web_root();
  asio::awaitable<reply> watch_page(request_context& ctx);
  asio::awaitable<reply> web_file(request_context& ctx);
  asio::awaitable<reply> viewer_login(request_context& ctx);
  // The reply refusing a request whose viewer token does not meet `req`; nullopt: it does.
  asio::awaitable<std::optional<reply>> token_refusal(request_context& ctx, auth::requirement req);
  asio::awaitable<void> send_preload(std::string url, api::preload_order order);
  asio::awaitable<void> send_delete(std::string url);
  asio::awaitable<reply> distribute(request_context& ctx);
  asio::awaitable<reply> set_availability(request_context& ctx);
  asio::awaitable<reply> holder(request_context& ctx);
  asio::awaitable<void> registry_loop();
  asio::awaitable<bool> report_to_registry();
  asio::awaitable<bool> send_report();
  asio::awaitable<void> reconcile_with_registry();
  bool reconciled = false;  // this process has checked the registry's view of the station once
  steady::time_point started = steady::now();
  // Copies (copies.cc). An engine of ours receives `key` from an engine of another station (claims
  // 12-14), never `exclude`; wait: the order answers when the copy is whole, else once the engine
  // receives it (it serves meanwhile). Returns the receiving engine.
  asio::awaitable<result<engine_slot>> copy_from_other_station(segment_key key, bool wait,
                                                               std::optional<engine_slot> exclude);
  // The same, sharing the copy of `key` in flight, if any, with the callers that wait for it.
  asio::awaitable<result<engine_slot>> copy_from_other_station_shared(
      segment_key key, bool wait, std::optional<engine_slot> exclude = std::nullopt);
  // An engine of ours receives a replica of `key` from the least loaded engine of ours holding it
  // (claims 19, 20); the _shared one shares the replica in flight.
  asio::awaitable<result<engine_slot>> replicate(segment_key key,
                                                 std::optional<engine_slot> exclude);
  asio::awaitable<result<engine_slot>> replicate_shared(segment_key key);
  // The outcome of a copy once it ends (at once if it has).
  static asio::awaitable<result<engine_slot>> copy_outcome(std::shared_ptr<pending_copy> p);
  // Starts the replica of `key` unless one is in flight; the pending copy says when it ends.
  std::shared_ptr<pending_copy> start_replica(segment_key key);
  // One operation per segment at a time (`start`, a task): callers share the one in flight.
  template <class Start>
  std::shared_ptr<pending_copy> start_once(copies_in_flight& in_flight, segment_key key,
                                           Start start);
  template <class Start>
  asio::awaitable<void> run_once(copies_in_flight& in_flight, segment_key key,
                                 std::shared_ptr<pending_copy> p, Start start);
  asio::awaitable<result<engine_slot>> order_fetch(engine_slot target, const segment_key& key,
                                                   std::vector<std::string> sources, bool wait);
  asio::awaitable<reply> evictions(request_context& ctx);
  asio::awaitable<bool> held_elsewhere(const segment_key& key, engine_slot engine);
  asio::awaitable<void> maintenance_loop();
  // The URL of engine's copy of `key`, `query` (with its '?') appended; ".vtt" for a console of
  // WebVTT segments, so that the engine answers text/vtt. Built by appending: fmt's runtime format
  // string cost more than the rest of the redirect handler.
  std::string segment_url(engine_slot engine, const segment_key& key, std::string_view query = {},
                          api::segment_format format = api::segment_format::mpegts) const;
  static std::string segment_url_at(std::string_view engine_url, const segment_key& key,
                                    std::string_view query, api::segment_format format);
  // Claim 23: `url`, a segment at `engine`, with a short-lived signature of its path (the engine is
  // shown that, not the viewer's token). errc::unavailable: not yet logged in at auth.
  result<std::string> signed_url(std::string url, engine_slot engine) const;
  // Where a console of `key` is sent at `engine`: with auth, signed (the query, the viewer's token,
  // stays here); else with the console's query.
  result<std::string> console_location(engine_slot engine, const segment_key& key,
                                       std::string_view query, api::segment_format format) const;
  // The redirect handler's steps (playback.cc): the engine for a console, by the tables (with the
  // preload hint); and, when every holder is at its limits, the one receiving a replica.
  std::optional<engine_slot> choose_for_console(const segment_key& key, steady::time_point now);
  asio::awaitable<std::optional<engine_slot>> wait_for_replica(segment_key key);
  asio::awaitable<void> prefetch_worker();
  // The engine of ours that should receive a copy of `key` (station_tables::choose_receiver).
  std::optional<engine_slot> choose_receiver(const segment_key& key,
                                             std::optional<engine_slot> exclude = std::nullopt);
  result<const api::program_manifest*> ready_program(const std::string& id) const;
  // ready_program, after learning a program this station does not know from the registry
  // (programs.cc). errc::unavailable: the registry could not be asked.
  asio::awaitable<result<const api::program_manifest*>> find_program(std::string id);
  asio::awaitable<status> learn_program(program_id id);
  asio::awaitable<void> look_up_program(program_id id, std::shared_ptr<pending_lookup> p);
  // Placement and repair (placement.cc).
  void plan_placement(steady::time_point now);
  asio::awaitable<void> repair(segment_key key);
  // Deletes engine's copy of `key` unless it is being streamed or received (then it is judged
  // again later). replica: a replica made for load (claim 19), else a copy beyond the placement.
  asio::awaitable<void> drop_copy(segment_key key, engine_slot engine, bool replica);
  uint64_t segment_size(const segment_key& key) const;
  // Where a console goes for a segment no engine of ours can serve (playback.cc): an engine of
  // ours now receiving it, or a URL at an engine of another station.
  struct fallback {
    std::optional<engine_slot> engine;
    std::string elsewhere;
  };
  asio::awaitable<result<fallback>> fall_back(segment_key key);
  void preload_next(const api::program_manifest& m, const segment_key& key, steady::time_point now);
  // The fallback of a console whose segment no engine of ours can serve or receive: a URL at an
  // engine of the cheapest other station holding it (signed there). copies.cc, with:
  asio::awaitable<result<std::string>> remote_holder(segment_key key);
  // The registry's sources of `key` other than this station, cheapest first.
  asio::awaitable<result<std::vector<api::source>>> other_sources(const segment_key& key);
  // The engine `src`'s director names for `key` (GET holder?`query`), its URL checked.
  asio::awaitable<result<api::holder_reply>> ask_holder(const api::source& src,
                                                        const segment_key& key,
                                                        std::string_view query);
  std::string missing_copies(const api::program_manifest& m, size_t want) const;

  // rtsp.cc
  asio::awaitable<void> rtsp_connection(net::foreign_connection& c);
  asio::awaitable<push::rtsp_response> rtsp_answer(push::rtsp_request req, tcp_endpoint peer,
                                                   rtsp_link& link);
  asio::awaitable<result<const api::program_manifest*>> rtsp_program(
      rtsp_target& t, std::optional<push::rtsp_response>& refused);
  asio::awaitable<push::rtsp_response> rtsp_describe(push::rtsp_request req, tcp_endpoint peer);
  asio::awaitable<push::rtsp_response> rtsp_setup(push::rtsp_request req, tcp_endpoint peer,
                                                  rtsp_link& link);
  asio::awaitable<push::rtsp_response> rtsp_play(push::rtsp_request req, std::string sid);
  asio::awaitable<push::rtsp_response> rtsp_pause(std::string sid);
  asio::awaitable<push::rtsp_response> rtsp_teardown(std::string sid);
  void end_session(const std::string& sid);
  // push.cc
  result<stream_start> plan_start(const api::program_manifest& m, const push_session& s,
                                  std::optional<double> npt) const;
  asio::awaitable<result<engine_slot>> push_engine_for(segment_key key,
                                                       std::vector<engine_slot> tried, bool whole);
  asio::awaitable<result<api::push_position>> start_stream(std::string sid, stream_start st,
                                                           std::vector<engine_slot> tried);
  asio::awaitable<void> stop_stream(std::string sid);
  asio::awaitable<void> send_stop(std::string engine_url, std::string sid);
  // With an auth server, an engine speaks only for itself: the guard checked the token's kind
  // and signature; its subject must be the engine the body names.
  status speaks_for(const request_context& ctx, const engine_id& engine) const;
  result<push_session*> engine_session(const request_context& ctx, const std::string& sid,
                                       const engine_id& engine, engine_slot& slot);
  void take_over(push_session& s, engine_slot e, const api::push_position& at);
  asio::awaitable<reply> push_next(request_context& ctx);
  asio::awaitable<reply> push_taken(request_context& ctx);
  asio::awaitable<reply> push_ended(request_context& ctx);
  asio::awaitable<reply> push_positions(request_context& ctx);
  asio::awaitable<void> resume(std::string sid, engine_slot from);
  asio::awaitable<void> push_sweep_loop();
  status open_rtcp_sink();
  asio::awaitable<void> rtcp_sink_loop(size_t which);
};

}  // namespace vodgrid::director
