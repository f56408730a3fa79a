// The engine daemon's state, shared by the files that implement it (engine.cc: start, stop,
// routes; serving.cc: segment requests; fill.cc: copies from other engines; eviction.cc: room
// under the disk budget; heartbeat.cc: inventory and load to the director; push.cc: RTP push
// streams). Private to src/engine.
#pragma once

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "api/api.h"
#include "api/push.h"
#include "auth/session.h"
#include "base/config.h"
#include "base/log.h"
#include "engine/decisions.h"
#include "engine/engine.h"
#include "net/client.h"
#include "net/daemon.h"
#include "net/http.h"
#include "net/tls.h"
#include "net/use_tuple.h"
#include "push/pacer.h"
#include "store/store.h"

namespace vodgrid::engine {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using net::reply;
using net::request_context;
using steady = std::chrono::steady_clock;
using net::use_tuple;

// A segment being copied from other engines and served to consoles while it arrives (cut-through,
// claims 19-21). One per segment per engine: every order and console for it shares it. The bytes go
// to the segment's temp file in the store as they arrive (store::incoming_segment; the copy holds
// only the client's window of them in memory), consoles read them from that file behind the
// written offset, and the store checks the digest and commits the file when it is whole; the last
// byte is held back from consoles until then, so that no console gets a whole reply of a copy that
// turned out bad. At most max_fills copies run at once; the others wait their turn (queued), their
// consoles with them. Lives on the engine's io thread.
class fill final : public net::growing_body {
 public:
  fill(asio::any_io_executor ex, api::fetch_order o)
      : order(std::move(o)),
        size(order.size),
        admission(ex, steady::time_point::max()),
        progress_(ex, steady::time_point::max()) {}
  uint64_t available() const override { return servable; }
  int fd() const override { return file ? file->fd() : -1; }
  asio::awaitable<void> wait_beyond(uint64_t have) override {
    while (servable <= have && !ended) {
      co_await progress_.async_wait(use_tuple);
    }
  }
  void advanced() { progress_.cancel(); }

  api::fetch_order order;
  std::shared_ptr<store::incoming_segment> file;  // made once the size is known
  uint64_t size = 0;                              // 0 until the order or the first source tells
  uint64_t received = 0;                          // bytes written into `file`
  uint64_t servable = 0;                          // what consoles may have
  bool ended = false;
  std::optional<error> failure;  // set when it ended without a stored copy
  std::optional<error> local;    // the file could not be made or written: no source can help
  std::string source;            // the URL in use, or the last one tried
  steady::time_point started = steady::now();
  bool admitted = false;         // one of the max_fills running
  bool queued = false;           // waiting for one
  asio::steady_timer admission;  // never expires; cancelled when admitted or at stop
  // The file mapped read-only for push streams (made on their first use; the pacer reads it).
  std::shared_ptr<const void> mapping;

 private:
  asio::steady_timer progress_;  // never expires; cancelled to wake every waiter on a change
};

using key_counts = std::unordered_map<segment_key, uint32_t>;

// The streams in flight and when each held segment was last asked for. Written by segment GETs on
// every loop (their route is loop_affinity::any, issue 16), by the server releasing their bodies
// (home loop) and by push streams (home loop); read on the home loop by eviction, heartbeats,
// metrics and DELETE ?if_idle. The counts are atomic; the maps are behind `mu_`, held for one
// lookup or update at a time (never across an await).
class segment_usage {
 public:
  // Console streams in flight, HTTP replies and push streams: what max_streams limits.
  std::atomic<uint32_t> active{0};
  // Replies to other engines' copies: exempt from max_streams.
  std::atomic<uint32_t> copies{0};
  // Console requests for segments decided since start (served, handed on or refused), reported
  // with every heartbeat (api::engine_load::consoles). Counted after the stream the request
  // starts, if any, and read by the heartbeat before `active`: a request between the two reads
  // counts twice for that heartbeat, never not at all.
  std::atomic<uint64_t> consoles{0};

  // A stream of `key` starts (a console's, or with `copy` another engine's): counted in all and
  // per segment until stream_ended. Returns the count it is counted in, itself included.
  uint32_t stream_started(const segment_key& key, bool copy) {
    {
      std::lock_guard lock(mu_);
      ++by_key_[key];
    }
    return (copy ? copies : active).fetch_add(1) + 1;
  }
  void stream_ended(const segment_key& key, bool copy) {
    --(copy ? copies : active);
    std::lock_guard lock(mu_);
    drop(key);
  }
  // A push stream moves on to another segment (its next): it is counted there, not in `from`.
  void stream_moved(const segment_key& from, const segment_key& to) {
    std::lock_guard lock(mu_);
    drop(from);
    ++by_key_[to];
  }
  // Whether a stream of `key` is in flight: a segment being streamed is never evicted.
  bool streaming(const segment_key& key) const {
    std::lock_guard lock(mu_);
    return by_key_.contains(key);
  }
  // `key`, a held segment, is asked for now (the order of eviction: least recently used first).
  void used(const segment_key& key, steady::time_point t) {
    std::lock_guard lock(mu_);
    last_used_[key] = t;
  }
  void forget(const segment_key& key) {
    std::lock_guard lock(mu_);
    last_used_.erase(key);
  }
  // The held segments as eviction sees them, in one hold of the lock.
  std::vector<eviction_candidate> candidates(const std::vector<store::segment_info>& held) const {
    std::vector<eviction_candidate> out;
    out.reserve(held.size());
    std::lock_guard lock(mu_);
    for (auto& s : held) {
      auto it = last_used_.find(s.key);
      // Segments never asked for count as oldest.
      out.push_back({s.key, s.size, it == last_used_.end() ? steady::time_point{} : it->second,
                     by_key_.contains(s.key)});
    }
    return out;
  }

 private:
  void drop(const segment_key& key) {
    if (auto it = by_key_.find(key); it != by_key_.end() && --it->second == 0) {
      by_key_.erase(it);
    }
  }
  mutable std::mutex mu_;
  key_counts by_key_;                                              // guarded by mu_
  std::unordered_map<segment_key, steady::time_point> last_used_;  // guarded by mu_
};

struct stream_guard;  // serving.cc: a segment reply's stream count and open file

// One push stream of this engine (DESIGN.md flow 8) as the io thread knows it; the pacer holds its
// bytes and its timing. It counts as one of the engine's streams (max_streams) while it exists.
struct push_stream {
  api::push_order order;  // as accepted: the console's address, the first segment
  struct segment_meta {
    double npt_start = 0;
    double duration = 0;
  };
  std::map<segment_key, segment_meta> segments;  // queued here, the first included
  std::optional<api::push_next_reply> next;      // the director's word on what follows the tail
  bool program_end = false;  // the director said the program ends after the tail
  bool sought = false;       // it started inside the first segment while that was arriving
  bool asking = false;       // a `next` request is in flight
  std::optional<push::stream_position> ended_at;  // the stream ended while asking
  bool handed_off = false;   // the next engine has it (or the director was told it failed): the
                             // pacer sends the rest of the segment and drops it
  int64_t leaves_at_ns = 0;  // handed off: when the next engine's first datagram is due
  bool swapping = false;     // a swap to an engine holding the whole segment is in flight
  segment_key counted;       // the key it counts for in `usage` (its last queued)
};

// Threading: every member is owned by the io thread, the home loop (coroutines touch them only
// between awaits), except `changes`, which store workers write under `changes_mu`, and what the
// segment GETs of every loop use (held_segment): `usage` (thread-safe), the store (thread-safe),
// `auth`'s shared_signer(), the metrics (atomic), and what start() sets and nothing changes after
// (`self`, `station`, `store`, `auth`, the metric pointers). The io_context, server, task group
// (copies, heartbeats), `stopping` and `port` come from net::daemon_base.
struct engine_daemon::impl : net::daemon_base {
  grid_config grid;
  const engine_config* self = nullptr;
  const station_config* station = nullptr;
  std::shared_ptr<spdlog::logger> logger = log::get("engine");
  std::unique_ptr<net::http_client> client;
  // With [auth]: the station key that checks the director's signatures, the keys that check other
  // engines' tokens, and our own engine token for copies.
  std::unique_ptr<auth::service_session> auth;
  // When its station shares session-ticket keys (grid_config::shares_ticket_keys, issue 17): the
  // keys its port makes and reads tickets with, as its director's last heartbeat reply gave them
  // (none before it: full handshakes). Null: OpenSSL's own keys. Thread-safe (net/tls.h).
  std::shared_ptr<net::ticket_keyring> tickets;
  // The heartbeat loop sleeps on it; cancelled to beat now (a change, a copy) and at stop.
  asio::steady_timer heartbeat_timer{io};

  // Streams in flight (counted when a segment reply starts, until the server releases its body
  // after the last byte or a failure) and when each segment was last asked for. Shared with the
  // replies' guards.
  std::shared_ptr<segment_usage> usage = std::make_shared<segment_usage>();

  // Inventory changes since the last heartbeat the director acknowledged. Written by store workers.
  // Only the last event per segment counts: a store then a delete within one interval is a delete.
  std::mutex changes_mu;
  std::map<segment_key, std::optional<api::segment_ref>> changes;  // nullopt: removed

  uint64_t epoch = std::random_device{}() * 4294967296ull + std::random_device{}();
  uint64_t seq = 0;
  bool need_full = true;
  double last_bytes_sent = 0;
  steady::time_point last_beat = steady::now();

  // Copies in progress (cut-through), and the copies that ended since the last heartbeat.
  std::unordered_map<segment_key, std::shared_ptr<fill>> fills;
  uint32_t fills_running = 0;                    // admitted, at most self->max_fills
  std::deque<std::shared_ptr<fill>> fill_queue;  // waiting for a slot, first come first served
  std::vector<api::copy_result> copies_done;
  bool evicting = false;

  net::metric_value* fetches_ok = nullptr;
  net::metric_value* evictions = nullptr;
  net::metric_value* cut_through_streams = nullptr;
  // Console requests for a segment: a hit is served from a whole local copy, a miss is not (it is
  // still arriving, or not here at all).
  net::metric_value* segment_hits = nullptr;
  net::metric_value* segment_misses = nullptr;
  // Replies of held segments sent by a further loop, with no hop to the home loop (threads > 1).
  net::metric_value* served_off_home = nullptr;
  net::histogram* fill_seconds = nullptr;  // whole copies received
  net::metric_value* handoffs = nullptr;
  net::metric_value* fetches_failed = nullptr;
  net::metric_value* preloads = nullptr;
  net::metric_value* bytes_sent = nullptr;

  // Push streams (push.cc), by RTSP session id. A control client with short timeouts (a hand-off
  // has handoff_lead to reach the next engine; the copy client waits as long as a fill).
  std::unordered_map<std::string, push_stream> pushes;
  std::unique_ptr<net::http_client> control;
  struct cached_index {
    std::shared_ptr<const push::ts_index> index;
    steady::time_point used;
  };
  std::unordered_map<segment_key, cached_index> ts_indexes;
  std::unordered_set<std::string> swapping_to;  // engines we are swapping a stream to now
  bool report_empty = false;  // the last report had streams: one empty report when they are gone
  net::metric_value* push_datagrams = nullptr;
  net::metric_value* push_late = nullptr;
  net::metric_value* push_send_errors = nullptr;
  net::metric_value* push_handoffs_out = nullptr;
  net::metric_value* push_handoffs_in = nullptr;
  net::metric_value* push_swaps_out = nullptr;
  net::metric_value* push_swaps_in = nullptr;

  // Declared last, destroyed first: its worker threads call on_store_change, which uses the
  // members above.
  std::unique_ptr<store::segment_store> store;
  // Thread-safe; its thread posts events to the io thread. Reset at on_stop (the thread joins),
  // and in any case destroyed before the store.
  std::unique_ptr<push::pacer> pacer;

  impl(asio::io_context& i, grid_config g) : daemon_base(i), grid(std::move(g)) {}

  std::string url() const { return self->listen.url(); }

  // engine.cc
  // Stop's first step: no more beats, and consoles waiting on copies in progress are let go.
  void on_stop() override;
  void routes();
  void register_metrics();
  void register_disk_metrics(net::metrics_registry& m);

  // serving.cc
  // On any loop: the held segment (held_segment), else the home loop's answer (segment_at_home).
  asio::awaitable<reply> get_segment(request_context& ctx);
  // The answer any loop gives alone, thread-safe: a held segment asked for with a valid signature
  // (or none needed), under the stream limit. nullopt: the home loop answers (a copy with an
  // engine token, the limit reached, a segment arriving or missing).
  std::optional<reply> held_segment(request_context& ctx);
  asio::awaitable<reply> segment_at_home(request_context& ctx);
  // The reply sending the held segment whose stream `guard` counts and whose file it holds, or a
  // 416; thread-safe.
  reply serve_held(request_context& ctx, std::shared_ptr<stream_guard> guard);
  // The reply refusing an unsigned segment request, or nullopt when it may pass.
  asio::awaitable<std::optional<reply>> segment_refusal(request_context& ctx, error why);
  asio::awaitable<reply> put_segment(request_context& ctx);
  asio::awaitable<reply> delete_segment(request_context& ctx);
  asio::awaitable<reply> list_segments(request_context& ctx);
  asio::awaitable<reply> preload(request_context& ctx);
  asio::awaitable<reply> serve_filling(request_context& ctx, std::shared_ptr<fill> f,
                                       const segment_key& key, bool copy);
  // Why a console is sent to another engine of the station (what engine_elsewhere asks).
  enum class elsewhere {
    at_limit,     // this engine is at its stream limit: any engine, one receiving a replica if none
    copy_failed,  // the copy it waited on failed: any engine, one receiving a copy if none
    seek_ahead,   // a range past what has arrived: only a whole copy
    not_held,     // the director's view was older than an eviction or a drop: as copy_failed
  };
  asio::awaitable<std::optional<std::string>> engine_elsewhere(const segment_key& key,
                                                               elsewhere why);
  asio::awaitable<reply> send_elsewhere(request_context& ctx, const segment_key& key,
                                        std::string_view why);
  void segment_headers(reply& r, std::string digest) const;

  // fill.cc
  asio::awaitable<reply> fetch(request_context& ctx);
  asio::awaitable<reply> take_fetch(request_context& ctx);  // the order itself; fetch stamps it
  result<std::shared_ptr<fill>> start_fill(const api::fetch_order& order);
  asio::awaitable<void> run_fill(std::shared_ptr<fill> f);
  asio::awaitable<std::string> copy_from(std::shared_ptr<fill> f, std::string src,
                                         std::string last);
  asio::awaitable<void> finish_fill(std::shared_ptr<fill> f, std::string last);
  asio::awaitable<void> admit(std::shared_ptr<fill> f);
  void release_slot(fill& f);

  // eviction.cc
  asio::awaitable<status> make_room(uint64_t bytes);
  uint64_t bytes_over(uint64_t bytes) const;
  asio::awaitable<std::vector<segment_key>> evictions_allowed(uint64_t over);
  asio::awaitable<void> evict(std::vector<segment_key> allowed, uint64_t over);

  // heartbeat.cc
  asio::awaitable<void> heartbeat_loop();
  asio::awaitable<bool> beat();
  void take_ticket_keys(const api::heartbeat_reply& rep);
  void on_store_change(const store::segment_info& s, bool was_added);

  // push.cc
  status start_push();
  void register_push_metrics();
  asio::awaitable<reply> push_start(request_context& ctx);
  asio::awaitable<reply> push_stop(request_context& ctx);
  asio::awaitable<reply> start_pushing(api::push_order order, push::segment_play play);
  asio::awaitable<result<push::segment_play>> push_segment(segment_key key, double npt_start,
                                                           double duration);
  result<push::segment_source> held_source(const segment_key& key);
  asio::awaitable<result<push::segment_source>> filling_source(std::shared_ptr<fill> f);
  asio::awaitable<void> follow_fill(std::shared_ptr<fill> f,
                                    std::shared_ptr<std::atomic<uint64_t>> available);
  std::shared_ptr<const push::ts_index> ts_index_of(const segment_key& key, std::string_view bytes,
                                                    bool keep);
  void on_push_event(push::stream_event e);  // the pacer's thread
  asio::awaitable<void> push_event(push::stream_event e);
  asio::awaitable<void> push_next_wanted(push::stream_position at);
  asio::awaitable<void> push_append(std::string sid, api::push_next_reply next);
  asio::awaitable<bool> push_make_way(std::string sid);
  asio::awaitable<void> push_hand_off(push::stream_position at);
  asio::awaitable<bool> push_hand_to(push::stream_position at, api::push_next_reply target);
  asio::awaitable<bool> push_restart(push::stream_position at, api::push_next_reply next);
  asio::awaitable<bool> push_keep(push::stream_position at, api::push_next_reply next);
  asio::awaitable<void> push_ended(push::stream_position at);
  asio::awaitable<void> push_starved(push::stream_position at);
  asio::awaitable<bool> push_swap_back(api::push_order incoming);
  asio::awaitable<bool> push_order_to(std::string url, api::push_order o);
  asio::awaitable<void> push_failed_fill(segment_key key);
  asio::awaitable<void> push_report_loop();
  asio::awaitable<result<net::client_response>> to_director(std::string path, json::value body);
  void count_push(push_stream& p, const segment_key& key);
  void forget_push(const std::string& sid);
};

}  // namespace vodgrid::engine
