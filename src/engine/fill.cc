// Copies from other engines (claims 12, 19-21): fetch orders, one fill per segment shared by every
// order and console that wants it, the transfer from the order's sources in turn with range
// resumption, and the hand-over to the store, which checks the digest. Serving a fill while it
// arrives is serving.cc's; the size check of a source's reply is announced_size (decisions.h).
#include <boost/json/serialize.hpp>

#include <charconv>
#include <limits>

#include "engine/decisions.h"
#include "engine/impl.h"

namespace vodgrid::engine {

uint64_t announced_size(unsigned status, std::string_view content_length,
                        std::string_view content_range, uint64_t base, uint64_t known_size) {
  uint64_t total = 0;
  if (base == 0 && status == 200) {
    auto end = content_length.data() + content_length.size();
    auto [p, ec] = std::from_chars(content_length.data(), end, total);
    if (ec != std::errc() || p != end) {
      total = 0;
    }
  } else if (base > 0 && status == 206 && known_size > 0) {
    // Content-Range: bytes <base>-<size-1>/<size>
    if (content_range == fmt::format("bytes {}-{}/{}", base, known_size - 1, known_size)) {
      total = known_size;
    }
  }
  return total;
}

// POST /v1/orders/fetch: copy a segment from other engines (claims 12, 19). Orders for a segment
// already arriving share its copy: one upstream transfer per segment per engine. An answer that
// took the order carries the engine's last heartbeat (api::heartbeat_header): the director keeps
// what it notes from the answer against heartbeats written before it.
asio::awaitable<reply> engine_daemon::impl::fetch(request_context& ctx) {
  auto r = co_await take_fetch(ctx);
  if (http::to_status_class(r.status) == http::status_class::successful) {
    // Written after the copy was in `fills` (or held): every later heartbeat names it.
    r.headers.emplace_back(api::heartbeat_header, api::to_header({epoch, seq}));
  }
  co_return r;
}

asio::awaitable<reply> engine_daemon::impl::take_fetch(request_context& ctx) {
  auto order = api::decode<api::fetch_order>(ctx.req.body());
  if (!order) {
    co_return net::error_reply(order.err());
  }
  for (auto& src : order->sources) {
    if (auto u = net::parse_http_url(src); !u) {
      co_return net::error_reply(u.err());
    }
  }
  if (order->size > self->max_segment_bytes) {
    co_return net::error_reply(make_error(
        errc::too_large, fmt::format("{} bytes; this engine takes segments of at most {}",
                                     order->size, self->max_segment_bytes)));
  }
  if (auto held = store->find(order->key)) {
    if (held->sha256 != order->sha256) {
      co_return net::error_reply(make_error(
          errc::conflict, order->key.str() + " is held with sha256 " + to_hex(held->sha256)));
    }
    co_return net::json_reply(api::to_json(api::segment_ref{held->key, held->size, held->sha256}));
  }
  std::shared_ptr<fill> f;
  if (auto it = fills.find(order->key); it != fills.end()) {
    f = it->second;
    if (f->order.sha256 != order->sha256) {
      co_return net::error_reply(
          make_error(errc::conflict,
                     order->key.str() + " is arriving with sha256 " + to_hex(f->order.sha256)));
    }
  } else {
    if (auto room = co_await make_room(order->size); !room) {
      co_return net::error_reply(room.err());
    }
    auto started = start_fill(*order);
    if (!started) {
      co_return net::error_reply(started.err());
    }
    f = *started;
  }
  if (!order->wait) {
    co_return net::json_reply(json::object{{"program", order->key.program.str()},
                                           {"index", order->key.index.v},
                                           {"filling", true}},
                              http::status::accepted);
  }
  co_await f->wait_beyond(std::numeric_limits<uint64_t>::max() - 1);
  if (f->failure) {
    co_return net::error_reply(*f->failure);
  }
  co_return net::json_reply(api::to_json(api::segment_ref{f->order.key, f->size, f->order.sha256}),
                            http::status::created);
}

result<std::shared_ptr<fill>> engine_daemon::impl::start_fill(const api::fetch_order& order) {
  if (stopping) {
    return make_error(errc::unavailable, "the engine is stopping");
  }
  auto f = std::make_shared<fill>(io.get_executor(), order);
  fills.emplace(order.key, f);
  tasks.spawn(run_fill(f));
  heartbeat_timer.cancel();  // the director learns at once that this engine is receiving it
  return f;
}

// Waits for one of the max_fills slots: a copy's memory is small now, but each holds a connection
// to a source, a file and a share of the disk's write bandwidth. Queued copies keep their place in
// `fills`: orders and consoles for them join them and wait.
asio::awaitable<void> engine_daemon::impl::admit(std::shared_ptr<fill> f) {
  if (fills_running < self->max_fills && fill_queue.empty()) {
    ++fills_running;
    f->admitted = true;
    co_return;
  }
  fill_queue.push_back(f);
  f->queued = true;
  while (!f->admitted && !stopping) {
    co_await f->admission.async_wait(use_tuple);
  }
  f->queued = false;
}

// A copy ended: its slot goes to the first copy queued.
void engine_daemon::impl::release_slot(fill& f) {
  if (!f.admitted) {
    return;
  }
  f.admitted = false;
  --fills_running;
  while (fills_running < self->max_fills && !fill_queue.empty()) {
    auto next = std::move(fill_queue.front());
    fill_queue.pop_front();
    if (!next->ended) {
      ++fills_running;
      next->admitted = true;
      next->admission.cancel();
    }
  }
}

// Receives a segment from the order's sources in turn; a transfer cut short resumes at the next
// source with a range for the bytes still missing. Then the store checks and keeps it.
asio::awaitable<void> engine_daemon::impl::run_fill(std::shared_ptr<fill> f) {
  co_await admit(f);
  std::string last = "no source answered";
  for (auto& src : f->order.sources) {
    if (stopping || f->local || (f->size > 0 && f->received == f->size)) {
      break;
    }
    last = co_await copy_from(f, src, std::move(last));
  }
  co_await finish_fill(f, std::move(last));
}

namespace {

// Thrown from a piece handler to end a transfer whose bytes cannot be kept (the file could not be
// written): the client offers no other way to leave a body mid-way. Caught in copy_from.
struct unwritable {
  error why;
};

}  // namespace

// One transfer from `src`, from the first byte still missing, into the segment's file through the
// client's window. Returns why it stopped short (what run_fill reports if no later source
// completes the copy), or `last`, the reason so far.
asio::awaitable<std::string> engine_daemon::impl::copy_from(std::shared_ptr<fill> f,
                                                            std::string src, std::string last) {
  const auto& key = f->order.key;
  f->source = src;
  uint64_t base = f->received;
  net::http_client::header_list headers{{api::copy_header, self->name.str()}};
  if (base > 0) {
    headers.emplace_back("Range", fmt::format("bytes={}-", base));
  }
  std::optional<std::string> refused;
  net::http_client::piece_sink sink;
  sink.on_head = [&](const net::client_response& h) {
    uint64_t total = announced_size(h.status, h.header("Content-Length"), h.header("Content-Range"),
                                    base, f->size);
    if (total == 0 || (f->size > 0 && total != f->size) || total > self->max_segment_bytes) {
      refused = fmt::format("{} answered {} ({} bytes) for {}", src, h.status, total, key.str());
      return false;
    }
    f->size = total;
    if (!f->file) {
      auto made = store->begin_put(key, total);
      if (!made) {
        f->local = made.err();
        refused = made.err().detail;
        return false;
      }
      f->file = std::move(*made);
    }
    return true;
  };
  sink.on_piece = [&](std::string_view piece) {
    if (auto st = f->file->append(piece); !st) {
      throw unwritable{st.err()};
    }
    f->received += piece.size();
    f->servable = std::min(f->received, f->size - 1);  // the last byte waits for the digest
    f->advanced();
  };
  result<net::client_response> res = make_error(errc::internal, "not sent");
  try {
    res = co_await client->get_pieces(src, std::move(headers), std::move(sink));
  } catch (const unwritable& e) {
    f->local = e.why;
    res = e.why;
  }
  if (!res) {
    last = fmt::format("{}: {}", src, res.err().detail);
  } else if (refused) {
    last = *refused;
  }
  if (f->received < f->size || f->size == 0) {
    logger->warn("{}: copy of {} from {} stopped at {} of {} bytes: {}", self->name.str(),
                 key.str(), src, f->received, f->size, last);
  }
  co_return last;
}

// Hands a whole copy to the store (which checks the digest and commits the file), wakes every
// console waiting on it, and records the outcome for the next heartbeat.
asio::awaitable<void> engine_daemon::impl::finish_fill(std::shared_ptr<fill> f, std::string last) {
  const auto& key = f->order.key;
  release_slot(*f);
  if (f->local) {
    f->failure = f->local;
  } else if (f->file && f->size > 0 && f->received == f->size) {
    auto put = co_await store->commit(f->file, f->order.sha256);
    if (put) {
      f->servable = f->size;
    } else {
      f->failure = put.err();
    }
  } else {
    f->failure = make_error(errc::protocol_error, "source: " + last);
  }
  f->ended = true;
  f->advanced();
  if (auto it = fills.find(key); it != fills.end() && it->second == f) {
    fills.erase(it);
  }
  double secs = std::chrono::duration<double>(steady::now() - f->started).count();
  copies_done.push_back(api::copy_result{key, f->source, f->received, secs, !f->failure,
                                         f->failure ? f->failure->detail : std::string()});
  if (f->failure) {
    fetches_failed->inc();
    logger->warn("{}: copy of {} failed: {}", self->name.str(), key.str(), f->failure->detail);
  } else {
    fetches_ok->inc();
    fill_seconds->observe(secs);
  }
  heartbeat_timer.cancel();  // copy done (claim 20): the director hears of it now
}

}  // namespace vodgrid::engine
