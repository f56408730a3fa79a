// The engine's push streams (pacer.h): one thread and one UDP socket for every stream, streams
// woken in the order of their next deadline (a datagram, an event, a sender report) from a
// min-heap, datagrams gathered into sendmmsg(2) batches that point into the segments' bytes.
#include "push/pacer.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <queue>
#include <thread>
#include <unordered_map>

#include "push/rtp.h"

namespace vodgrid::push {

namespace {

constexpr int64_t ns_per_s = 1'000'000'000;
constexpr int64_t late_after_ns = 2'000'000;
constexpr int64_t starved_recheck_ns = 1'000'000;
constexpr int64_t never = std::numeric_limits<int64_t>::max();
// A stream whose first datagram was due longer ago than this starts its clock again now: a burst
// of the backlog would only overflow the console's buffers.
constexpr int64_t max_catch_up_ns = ns_per_s;
// A segment still arriving is indexed again (on this thread) each time this much more of it has
// arrived, so that its pacing follows its PCRs rather than a straight line to its end.
constexpr uint64_t reindex_step_bytes = 256 << 10;
// EAGAIN (the socket buffer full): wait up to 1 ms for room, this many times, then count the rest
// of the batch as refused rather than hold the streams' lock any longer.
constexpr int max_send_waits = 20;
// One pump serves the streams due for at most this long, then lets the events out and the
// commands in: behind schedule (more streams than the core can send), an unbounded pump would
// hold the lock, and the next_wanted events, for good, and the engine around it would stall.
constexpr int64_t max_pump_ns = 2'000'000;
// A pump sends what is due this soon too: each wake-up then sends a batch rather than the one or
// two datagrams due at that instant (a wake-up costs about as much as a few datagrams).
constexpr int64_t send_ahead_ns = 250'000;
// A stream gets at most this many datagrams a turn; then the stream due first goes next. Behind
// schedule, the most overdue datagrams go first, whichever their stream, and a pump ends on time
// (a stream far behind would otherwise send its whole backlog at once).
constexpr int max_per_service = 8;
// The pacer's thread runs at this real-time priority (SCHED_FIFO) when permitted: it then
// preempts the engine's other threads, and any other process on its core, the moment a datagram
// is due. (Under the fair scheduler a thread that has had its share of a busy core waits its
// turn: measured, 2-8 ms behind a compiler on the same core, up to 60 ms.)
constexpr int thread_rt_priority = 10;
// Real-time and behind schedule, the thread leaves the engine's other threads a tenth of the
// core: it owes them a ninth of the time it runs, less the time it sleeps, and pays (sleeps) once
// it owes owed_limit_ns. Otherwise a pacer behind would have the core to itself, and the engine
// would not queue the next segments or report. (It stays real-time: under the fair scheduler a
// pacer behind on a busy core only falls further behind.)
constexpr int64_t others_share_div = 9;
constexpr int64_t owed_limit_ns = 200'000;
constexpr int64_t owed_max_ns = 1'000'000;
// Under the fair scheduler: a short time slice (Linux 6.12 on, EEVDF: when it wakes for a
// datagram it preempts the engine's other threads on its core within about that long; older
// kernels ignore it), and a larger share of a busy core when permitted.
constexpr uint64_t thread_slice_ns = 100'000;
constexpr int thread_nice = -10;

// Real-time scheduling for the calling thread; whether it was permitted.
bool run_realtime() {
  sched_param rt{};
  rt.sched_priority = thread_rt_priority;
  // SCHED_RESET_ON_FORK: a process started from this thread would not inherit the priority.
  return ::sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &rt) == 0;
}

// The fair scheduler's best for the calling thread. Not needed for correctness.
void run_fair() {
  struct {  // struct sched_attr of sched_setattr(2), which glibc does not declare
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
  } a{};
  a.size = sizeof(a);
  a.sched_policy = SCHED_OTHER;
  a.sched_nice = thread_nice;
  a.sched_runtime = thread_slice_ns;
  if (::syscall(SYS_sched_setattr, 0, &a, 0) != 0) {
    a.sched_nice = 0;
    ::syscall(SYS_sched_setattr, 0, &a, 0);
  }
}

// A mutex with priority inheritance: an engine thread that holds it when the real-time pacer
// thread wants it runs at the pacer's priority until it lets go, rather than wait behind the
// other work on the core while the pacer waits for it.
class pi_mutex {
 public:
  pi_mutex() {
    pthread_mutexattr_t a;
    ::pthread_mutexattr_init(&a);
    ::pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    ::pthread_mutex_init(&m_, &a);
    ::pthread_mutexattr_destroy(&a);
  }
  ~pi_mutex() { ::pthread_mutex_destroy(&m_); }
  pi_mutex(const pi_mutex&) = delete;
  pi_mutex& operator=(const pi_mutex&) = delete;
  void lock() { ::pthread_mutex_lock(&m_); }
  bool try_lock() { return ::pthread_mutex_trylock(&m_) == 0; }
  void unlock() { ::pthread_mutex_unlock(&m_); }

 private:
  pthread_mutex_t m_;
};

int64_t mono_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * ns_per_s + ts.tv_nsec;
}

int64_t unix_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * ns_per_s + ts.tv_nsec;
}

bool key_frames_only(double scale) {
  return scale < 0 || scale > 1;
}

uint32_t rtp_timestamp(const stream_state& st, double npt) {
  auto ticks = static_cast<uint64_t>(std::llround(npt * rtp_clock_hz));
  return static_cast<uint32_t>(st.rtp_base + ticks);
}

int64_t due_ns(const stream_state& st, double npt) {
  return st.origin_unix_ns + std::llround((npt - st.origin_npt) / st.scale * 1e9);
}

// A queued segment as the pacer holds it. Its index claims the source's whole size (the bytes
// indexed are `indexed`), so that due_at extrapolates past what a segment still arriving holds.
struct queued {
  segment_play play;
  std::shared_ptr<const ts_index> index;
  uint64_t indexed = 0;
  bool starved = false;  // the starved event of this segment was sent

  uint64_t size() const { return play.source.size; }
  uint64_t arrived() const {
    return play.source.available ? play.source.available->load(std::memory_order_acquire)
                                 : play.source.size;
  }
  double npt_at(uint64_t offset) const {
    return play.npt_start + due_at(*index, std::min(offset, size()), play.duration);
  }
  double end_npt(int dir) const {
    return dir > 0 ? play.npt_start + play.duration : play.npt_start;
  }
};

queued make_queued(segment_play p) {
  queued q;
  q.indexed = p.source.index->size;
  if (q.indexed == p.source.size) {
    q.index = p.source.index;
  } else {
    auto ix = std::make_shared<ts_index>(*p.source.index);
    ix->size = p.source.size;
    q.index = std::move(ix);
  }
  q.play = std::move(p);
  return q;
}

// Where a stream is in its current segment. Full play: `at` is the next datagram's first byte.
// Key frames: forward, the next key frame is the first at or after `at`; backward, the last
// before `at`; `part` bytes of its payload (the PSI packets, then the frame) are sent.
struct cursor {
  uint64_t at = 0;
  uint64_t part = 0;
};

// What the next datagram of a stream carries, or why there is none.
struct plan {
  enum kind_t { send, done, wait_index } kind = done;
  double npt = 0;         // the datagram's program time (wait_index: the frontier's)
  uint64_t position = 0;  // the stream's offset as positions() reports it
  uint64_t need = 0;      // the source bytes that must have arrived
  std::array<iovec, 2> pieces{};
  int count = 0;
  uint64_t bytes = 0;
  uint64_t frame = 0;       // key frames: the frame's offset
  bool frame_ends = false;  // key frames: the datagram is its frame's last
};

plan plan_full(const queued& q, const cursor& c) {
  plan p;
  if (c.at >= q.size()) {
    return p;
  }
  uint64_t len = std::min<uint64_t>(datagram_payload_bytes, q.size() - c.at);
  p.kind = plan::send;
  p.npt = q.npt_at(c.at);
  p.position = c.at;
  p.need = c.at + len;
  p.pieces[0] = {const_cast<char*>(q.play.source.data) + c.at, len};
  p.count = 1;
  p.bytes = len;
  return p;
}

// The key frame a cursor points at, nullptr when there is none, or wait_index when the index of a
// segment still arriving does not reach it yet.
const ts_index::keyframe* next_frame(const queued& q, const cursor& c, int dir, bool& wait) {
  const auto& kfs = q.index->keyframes;
  bool whole = q.indexed >= q.size();
  wait = false;
  const ts_index::keyframe* kf = nullptr;
  if (dir > 0) {
    auto it =
        std::lower_bound(kfs.begin(), kfs.end(), c.at,
                         [](const ts_index::keyframe& k, uint64_t o) { return k.offset < o; });
    kf = it == kfs.end() ? nullptr : &*it;
  } else {
    if (!whole && c.at > q.indexed) {
      wait = true;
      return nullptr;
    }
    auto it =
        std::lower_bound(kfs.begin(), kfs.end(), c.at,
                         [](const ts_index::keyframe& k, uint64_t o) { return k.offset < o; });
    kf = it == kfs.begin() ? nullptr : &*std::prev(it);
  }
  // A frame reaching the end of a partial index may go on past it.
  if ((!kf && !whole && dir > 0) || (kf && !whole && kf->offset + kf->length >= q.indexed)) {
    wait = true;
    return nullptr;
  }
  return kf;
}

plan plan_key_frame(const queued& q, const cursor& c, int dir) {
  plan p;
  bool wait = false;
  const auto* kf = next_frame(q, c, dir, wait);
  if (wait) {
    p.kind = plan::wait_index;
    p.npt = q.npt_at(dir > 0 ? q.indexed : c.at);
    p.position = c.at;
    return p;
  }
  if (!kf) {
    return p;
  }
  const auto& ix = *q.index;
  uint64_t psi = kf->offset >= ix.psi_bytes ? ix.psi_bytes : 0;
  uint64_t total = psi + kf->length;
  uint64_t len = std::min<uint64_t>(datagram_payload_bytes, total - c.part);
  auto* data = const_cast<char*>(q.play.source.data);
  uint64_t from = c.part;
  uint64_t to = c.part + len;
  if (from < psi) {
    p.pieces[p.count++] = {data + from, std::min(to, psi) - from};
  }
  if (to > psi) {
    uint64_t f = std::max(from, psi) - psi;
    p.pieces[p.count++] = {data + kf->offset + f, to - psi - f};
  }
  p.kind = plan::send;
  p.npt = q.npt_at(kf->offset);
  p.position = dir > 0 ? kf->offset : kf->offset + ts_packet_bytes;
  p.need = kf->offset + kf->length;
  p.bytes = len;
  p.frame = kf->offset;
  p.frame_ends = to == total;
  return p;
}

struct stream {
  uint64_t id = 0;
  uint64_t gen = 0;  // heap entries of older generations are stale
  std::string session;
  sockaddr_storage rtp_to{};
  sockaddr_storage rtcp_to{};
  socklen_t to_len = 0;
  stream_state state;
  std::deque<queued> queue;  // front: being sent; never empty
  cursor cur;
  bool hand_off = false;
  bool handoff_told = false;
  bool program_ends = false;  // a BYE at the end
  int64_t bye_at = 0;         // when the BYE is due (set when the last datagram has gone)
  uint64_t tail_serial = 1;   // counts appends: next_wanted comes once per tail
  uint64_t asked_serial = 0;
  bool waiting = false;  // for bytes still arriving
  bool held = false;     // hold(): not scheduled until release()
  int64_t next_report_ns = 0;
  uint64_t packets = 0;
  uint64_t octets = 0;

  int dir() const { return state.scale < 0 ? -1 : 1; }
  bool key_frames() const { return key_frames_only(state.scale); }
  plan next() const {
    return key_frames() ? plan_key_frame(queue.front(), cur, dir()) : plan_full(queue.front(), cur);
  }
};

// RTP datagrams in the making: a batch for sendmmsg.
struct slot {
  std::array<uint8_t, rtp_header_bytes> header{};
  std::array<iovec, 3> iov{};
  sockaddr_storage to{};
  int64_t due = 0;
  uint64_t bytes = 0;
};

struct wake {
  int64_t at = 0;
  uint64_t id = 0;
  uint64_t gen = 0;
  bool operator>(const wake& o) const { return at > o.at; }
};

status check_play(const segment_play& p, double scale) {
  const auto& s = p.source;
  if (!s.data || !s.index || s.size == 0) {
    return make_error(errc::invalid_argument, p.key.str() + ": a source without bytes or index");
  }
  if (s.index->size > s.size || (!s.available && s.index->size != s.size)) {
    return make_error(errc::invalid_argument, p.key.str() + ": the index is of other bytes");
  }
  bool backward = scale < 0;
  if (p.offset % ts_packet_bytes != 0 || p.offset > s.size || (!backward && p.offset == s.size)) {
    return make_error(errc::invalid_argument, p.key.str() + ": offset " + std::to_string(p.offset) +
                                                  " is not a packet boundary inside the segment");
  }
  if (!std::isfinite(p.npt_start) || !std::isfinite(p.duration) || p.duration < 0) {
    return make_error(errc::invalid_argument, p.key.str() + ": a bad program time or duration");
  }
  return {};
}

}  // namespace

struct pacer::impl {
  pacer_options opts;
  std::function<void(stream_event)> on_event;
  std::thread thread;
  int fd = -1;
  int family = AF_UNSPEC;
  uint16_t port = 0;

  // State below is guarded by mu. The pacer thread holds it while it sends, so that the bytes a
  // batch points into stay alive until the batch is sent.
  mutable pi_mutex mu;
  bool quit = false;
  bool kicked = false;    // a command changed a stream: look at the heap again
  bool sleeping = false;  // the thread waits on `wake_fd` (the lock let go)
  // Wakes the thread (an eventfd). Not a condition variable: its notify takes a mutex of its own,
  // without priority inheritance, and the real-time thread woken would wait on it.
  int wake_fd = -1;
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, std::unique_ptr<stream>> streams;
  std::unordered_map<std::string, uint64_t> by_session;
  std::priority_queue<wake, std::vector<wake>, std::greater<>> heap;
  pacer_counters counters;

  // Owned by the pacer thread (used under mu).
  std::vector<slot> slots;
  std::vector<mmsghdr> msgs;
  size_t used = 0;
  // Sources of segments finished or streams gone while the batch may still point into them.
  std::vector<std::shared_ptr<const void>> retired;

  impl(pacer_options o, std::function<void(stream_event)> f)
      : opts(std::move(o)), on_event(std::move(f)) {}

  status open_socket();
  void run();
  void pump(std::vector<stream_event>& events);
  std::optional<int64_t> service(stream& s, int64_t now, std::vector<stream_event>& events);
  int64_t send_due(stream& s, int64_t now, std::vector<stream_event>& events, bool& drained);
  void enqueue(stream& s, const plan& p, int64_t due);
  void advance(stream& s, const plan& p);
  void next_segment(stream& s);
  bool reindex(queued& q, bool needed);
  void starve(stream& s, std::vector<stream_event>& events);
  void send_report(stream& s, int64_t now, bool bye = false);
  void flush();
  void schedule(stream& s, int64_t at) {
    if (!s.held) {
      heap.push({at, s.id, ++s.gen});
    }
  }
  void sleep(std::unique_lock<pi_mutex>& lock, int64_t ns);
  void kick() {
    kicked = true;
    if (sleeping) {
      uint64_t one = 1;
      (void)!::write(wake_fd, &one, sizeof(one));
    }
  }
  stream* find(const std::string& session) {
    auto it = by_session.find(session);
    return it == by_session.end() ? nullptr : streams.at(it->second).get();
  }
  void remove(stream& s) {
    for (auto& q : s.queue) {
      retired.push_back(q.play.source.owner);
    }
    by_session.erase(s.session);
    streams.erase(s.id);
  }
  stream_position position(const stream& s) const;
  stream_position end_of_tail(const stream& s) const;
  uint64_t datagrams_left(const stream& s) const;
};

status pacer::impl::open_socket() {
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(opts.bind_host, ec);
  if (ec) {
    return make_error(errc::invalid_argument,
                      "push bind host " + opts.bind_host + " is not an IP address");
  }
  udp_endpoint local(addr, 0);
  family = addr.is_v4() ? AF_INET : AF_INET6;
  fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return make_error(errc::io_error, std::string("socket: ") + std::strerror(errno));
  }
  int sndbuf = opts.send_buffer_bytes;
  if (sndbuf > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  }
  if (::bind(fd, local.data(), static_cast<socklen_t>(local.size())) != 0) {
    return make_error(errc::io_error, "bind " + opts.bind_host + ": " + std::strerror(errno));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                 : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return {};
}

void pacer::impl::run() {
  run_fair();
  bool realtime = run_realtime();
  std::unique_lock lock(mu);
  counters.realtime = realtime;
  std::vector<stream_event> events;
  int64_t woke = mono_now_ns();  // when the thread last went on after a sleep
  int64_t owed = 0;              // the time the thread owes the engine's other threads
  while (!quit) {
    pump(events);
    if (!events.empty()) {
      auto delivering = std::move(events);
      events.clear();
      lock.unlock();
      for (auto& e : delivering) {
        if (on_event) {
          on_event(std::move(e));
        }
      }
      lock.lock();
      continue;
    }
    int64_t awake = mono_now_ns();
    if (realtime) {
      owed = std::min(owed_max_ns, owed + (awake - woke) / others_share_div);
    }
    int64_t now = unix_now_ns();
    int64_t next = heap.empty() ? now + ns_per_s : std::min(heap.top().at, now + ns_per_s);
    if (owed >= owed_limit_ns && (kicked || next - now < owed)) {
      // The others' turn: not cut short by a command (it waits for the lock meanwhile).
      lock.unlock();
      timespec t{0, static_cast<long>(owed)};
      ::clock_nanosleep(CLOCK_MONOTONIC, 0, &t, nullptr);
      lock.lock();
    } else if (next > now && !kicked) {
      sleep(lock, next - now);
    } else {
      // Due at once: a command waiting for the lock gets it in between (the lock goes to a
      // waiter when it is let go).
      lock.unlock();
      lock.lock();
      woke = awake;
      kicked = false;
      continue;
    }
    woke = mono_now_ns();
    owed = std::max<int64_t>(0, owed - (woke - awake));
    kicked = false;
  }
}

// Lets go of the lock for `ns`, or until a command kicks the thread or it is to quit.
void pacer::impl::sleep(std::unique_lock<pi_mutex>& lock, int64_t ns) {
  timespec t{static_cast<time_t>(ns / ns_per_s), static_cast<long>(ns % ns_per_s)};
  sleeping = true;
  lock.unlock();
  pollfd p{wake_fd, POLLIN, 0};
  if (::ppoll(&p, 1, &t, nullptr) > 0) {
    uint64_t kicks = 0;
    (void)!::read(wake_fd, &kicks, sizeof(kicks));
  }
  lock.lock();
  sleeping = false;
}

// Serves every stream whose time has come (or comes within send_ahead_ns), for at most
// max_pump_ns, then sends what is left of the batch.
void pacer::impl::pump(std::vector<stream_event>& events) {
  int64_t now = unix_now_ns();
  int64_t until = now + max_pump_ns;
  while (!heap.empty() && heap.top().at <= now + send_ahead_ns && now < until) {
    wake w = heap.top();
    heap.pop();
    auto it = streams.find(w.id);
    if (it == streams.end() || it->second->gen != w.gen) {
      continue;
    }
    stream& s = *it->second;
    if (auto at = service(s, now + send_ahead_ns, events)) {
      schedule(s, *at);
    } else {
      remove(s);
    }
    if (used == 0) {
      now = unix_now_ns();  // a batch went out: time has passed
    }
  }
  flush();
  retired.clear();
}

// Sends what of stream `s` is due at `now` and the events that are due; returns when it next
// needs the thread, or nullopt when it is gone.
std::optional<int64_t> pacer::impl::service(stream& s, int64_t now,
                                            std::vector<stream_event>& events) {
  if (s.next_report_ns <= now) {
    send_report(s, now);
    s.next_report_ns = now + std::chrono::nanoseconds(opts.rtcp_interval).count();
  }
  bool drained = false;
  int64_t wake_at = std::min(s.next_report_ns, send_due(s, now, events, drained));
  int64_t tail_end = due_ns(s.state, s.queue.back().end_npt(s.dir()));
  if (!s.hand_off && s.asked_serial != s.tail_serial) {
    int64_t t = tail_end - std::chrono::nanoseconds(opts.next_lead).count();
    if (t <= now) {
      s.asked_serial = s.tail_serial;
      events.push_back({event_kind::next_wanted, end_of_tail(s)});
    } else {
      wake_at = std::min(wake_at, t);
    }
  }
  if (s.hand_off && !s.handoff_told) {
    int64_t t = tail_end - std::chrono::nanoseconds(opts.handoff_lead).count();
    if (t <= now || (drained && now >= tail_end)) {
      s.handoff_told = true;
      events.push_back({event_kind::handoff_due, end_of_tail(s)});
    } else {
      wake_at = std::min(wake_at, t);
    }
  }
  if (drained) {
    if (now < tail_end) {
      return std::min(wake_at, tail_end);
    }
    if (!s.hand_off) {
      if (s.program_ends) {
        if (s.bye_at == 0) {
          s.bye_at = now + std::chrono::nanoseconds(opts.bye_delay).count();
        }
        if (now < s.bye_at) {
          return std::min(wake_at, s.bye_at);  // (a sender report may come due meanwhile)
        }
        send_report(s, now, true);
      }
      events.push_back({event_kind::ended, position(s)});
    }
    return std::nullopt;
  }
  return wake_at;
}

// The datagrams of `s` due by `now` (at most max_per_service) go into the batch. Returns when the
// next one is due (or when to look again for bytes still arriving); `drained`: the last queued
// segment has no more.
int64_t pacer::impl::send_due(stream& s, int64_t now, std::vector<stream_event>& events,
                              bool& drained) {
  drained = false;
  int sent = 0;
  while (true) {
    queued& q = s.queue.front();
    reindex(q, false);
    plan p = s.next();
    if (p.kind == plan::wait_index && reindex(q, true)) {
      p = s.next();
    }
    if (p.kind == plan::done) {
      if (s.queue.size() == 1) {
        drained = true;
        return never;
      }
      next_segment(s);
      continue;
    }
    int64_t due = due_ns(s.state, p.npt);
    if (due > now || sent == max_per_service) {
      return due;
    }
    if (p.kind == plan::wait_index || q.arrived() < p.need) {
      starve(s, events);
      return now + starved_recheck_ns;
    }
    s.waiting = false;
    enqueue(s, p, due);
    advance(s, p);
    ++sent;
  }
}

void pacer::impl::enqueue(stream& s, const plan& p, int64_t due) {
  slot& d = slots[used];
  rtp_header h;
  h.seq = s.state.seq;
  h.timestamp = rtp_timestamp(s.state, p.npt);
  h.ssrc = s.state.ssrc;
  write_rtp_header(d.header, h);
  d.iov[0] = {d.header.data(), d.header.size()};
  for (int i = 0; i < p.count; ++i) {
    d.iov[1 + i] = p.pieces[i];
  }
  d.to = s.rtp_to;
  d.due = due;
  d.bytes = p.bytes;
  mmsghdr& m = msgs[used];
  m = {};
  m.msg_hdr.msg_name = &d.to;
  m.msg_hdr.msg_namelen = s.to_len;
  m.msg_hdr.msg_iov = d.iov.data();
  m.msg_hdr.msg_iovlen = 1 + p.count;
  ++s.state.seq;
  ++s.packets;
  s.octets += p.bytes;
  if (++used == slots.size()) {
    flush();
  }
}

void pacer::impl::advance(stream& s, const plan& p) {
  if (!s.key_frames()) {
    s.cur.at += p.bytes;
  } else if (p.frame_ends) {
    s.cur.part = 0;
    s.cur.at = s.dir() > 0 ? p.frame + ts_packet_bytes : p.frame;
  } else {
    s.cur.part += p.bytes;
  }
}

void pacer::impl::next_segment(stream& s) {
  retired.push_back(s.queue.front().play.source.owner);
  s.queue.pop_front();
  s.cur = {s.queue.front().play.offset, 0};
  s.waiting = false;
}

// Indexes again what a segment still arriving holds, when `needed` (the index does not reach
// the next key frame) or every reindex_step_bytes. Whether the index grew.
bool pacer::impl::reindex(queued& q, bool needed) {
  if (q.indexed >= q.size()) {
    return false;
  }
  uint64_t have = q.arrived() / ts_packet_bytes * ts_packet_bytes;
  if (have <= q.indexed || (!needed && have < q.size() && have - q.indexed < reindex_step_bytes)) {
    return false;
  }
  auto ix = index_ts(std::string_view(q.play.source.data, have));
  if (!ix) {
    return false;
  }
  ix->size = q.size();
  q.index = std::make_shared<const ts_index>(std::move(*ix));
  q.indexed = have;
  return true;
}

void pacer::impl::starve(stream& s, std::vector<stream_event>& events) {
  if (!s.waiting) {
    s.waiting = true;
    ++counters.starved;
  }
  auto& q = s.queue.front();
  if (!q.starved) {
    q.starved = true;
    events.push_back({event_kind::starved, position(s)});
  }
}

// A sender report (with `bye`, and an RTCP BYE: RFC 3550 6.6, the compound packet's last). The
// batch goes first: a BYE must not overtake the stream's last datagrams.
void pacer::impl::send_report(stream& s, int64_t now, bool bye) {
  if (bye) {
    flush();
  }
  double npt =
      s.state.origin_npt + static_cast<double>(now - s.state.origin_unix_ns) / 1e9 * s.state.scale;
  auto sr = rtcp_sender_report(s.state.ssrc, ntp_time(now), rtp_timestamp(s.state, npt),
                               static_cast<uint32_t>(s.packets), static_cast<uint32_t>(s.octets),
                               opts.cname);
  if (bye) {
    uint32_t ssrc = s.state.ssrc;
    sr.insert(sr.end(),
              {0x81, 203, 0, 1, static_cast<uint8_t>(ssrc >> 24), static_cast<uint8_t>(ssrc >> 16),
               static_cast<uint8_t>(ssrc >> 8), static_cast<uint8_t>(ssrc)});
  }
  auto n = ::sendto(fd, sr.data(), sr.size(), 0, reinterpret_cast<const sockaddr*>(&s.rtcp_to),
                    s.to_len);
  if (n < 0) {
    ++counters.send_errors;
  } else {
    ++counters.sender_reports;
  }
}

// Sends the batch. A datagram the kernel refuses (its destination unreachable, ...) is counted
// and skipped; a full socket buffer is waited on briefly.
void pacer::impl::flush() {
  size_t i = 0;
  int waits = 0;
  while (i < used) {
    int n = ::sendmmsg(fd, msgs.data() + i, static_cast<unsigned>(used - i), 0);
    if (n > 0) {
      int64_t now = unix_now_ns();
      for (size_t k = i; k < i + static_cast<size_t>(n); ++k) {
        ++counters.datagrams;
        counters.octets += slots[k].bytes;
        if (now - slots[k].due > late_after_ns) {
          ++counters.late;
        }
      }
      i += static_cast<size_t>(n);
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
      if (++waits > max_send_waits) {
        counters.send_errors += used - i;
        break;
      }
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 1);
    } else {
      ++counters.send_errors;
      ++i;
    }
  }
  used = 0;
}

// The stream's next datagram as a place to resume from, its clock's origin set.
stream_position pacer::impl::position(const stream& s) const {
  const queued& q = s.queue.front();
  plan p = s.next();
  stream_position pos;
  pos.session = s.session;
  pos.key = q.play.key;
  if (p.kind == plan::done) {
    pos.offset = s.dir() > 0 ? q.size() : 0;
    pos.npt = q.end_npt(s.dir());
  } else {
    pos.offset = p.position;
    pos.npt = p.kind == plan::send ? p.npt : q.npt_at(p.position);
  }
  pos.state = s.state;
  pos.packets = s.packets;
  pos.octets = s.octets;
  return pos;
}

// Where the stream will be at the end of its last queued segment: what the engine streaming the
// segment after it continues with (the next seq; the same clock, anchored at that end).
stream_position pacer::impl::end_of_tail(const stream& s) const {
  const queued& q = s.queue.back();
  stream_position pos;
  pos.session = s.session;
  pos.key = q.play.key;
  pos.offset = s.dir() > 0 ? q.size() : 0;
  pos.npt = q.end_npt(s.dir());
  pos.state = s.state;
  pos.state.seq = static_cast<uint16_t>(s.state.seq + datagrams_left(s));
  pos.state.origin_unix_ns = due_ns(s.state, pos.npt);
  pos.state.origin_npt = pos.npt;
  pos.packets = s.packets;
  pos.octets = s.octets;
  return pos;
}

// The datagrams still to send of the queued segments (of a segment still arriving in key frame
// mode, those of the key frames indexed so far).
uint64_t pacer::impl::datagrams_left(const stream& s) const {
  auto per = [](uint64_t bytes) {
    return (bytes + datagram_payload_bytes - 1) / datagram_payload_bytes;
  };
  uint64_t n = 0;
  for (size_t i = 0; i < s.queue.size(); ++i) {
    const queued& q = s.queue[i];
    cursor c = i == 0 ? s.cur : cursor{q.play.offset, 0};
    if (!s.key_frames()) {
      n += c.at < q.size() ? per(q.size() - c.at) : 0;
      continue;
    }
    while (true) {
      plan p = plan_key_frame(q, c, s.dir());
      if (p.kind != plan::send) {
        break;
      }
      uint64_t psi = p.frame >= q.index->psi_bytes ? q.index->psi_bytes : 0;
      uint64_t total = psi + (p.need - p.frame);
      n += per(total) - c.part / datagram_payload_bytes;
      c = {s.dir() > 0 ? p.frame + ts_packet_bytes : p.frame, 0};
    }
  }
  return n;
}

pacer::pacer(pacer_options o, std::function<void(stream_event)> on_event)
    : impl_(std::make_unique<impl>(std::move(o), std::move(on_event))) {}

pacer::~pacer() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->quit = true;
    impl_->kick();
  }
  if (impl_->thread.joinable()) {
    impl_->thread.join();
  }
  if (impl_->fd >= 0) {
    ::close(impl_->fd);
  }
  if (impl_->wake_fd >= 0) {
    ::close(impl_->wake_fd);
  }
}

status pacer::start() {
  auto& d = *impl_;
  if (d.fd >= 0) {
    return make_error(errc::conflict, "the pacer is running");
  }
  if (d.opts.batch == 0 || d.opts.batch > 1024) {
    return make_error(errc::invalid_argument, "push batch must be 1..1024 datagrams");
  }
  if (auto st = d.open_socket(); !st) {
    if (d.fd >= 0) {
      ::close(d.fd);
      d.fd = -1;
    }
    return st;
  }
  d.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (d.wake_fd < 0) {
    ::close(d.fd);
    d.fd = -1;
    return make_error(errc::io_error, std::string("eventfd: ") + std::strerror(errno));
  }
  d.slots.resize(d.opts.batch);
  d.msgs.resize(d.opts.batch);
  d.thread = std::thread([&d] { d.run(); });
  return {};
}

uint16_t pacer::local_port() const {
  return impl_->port;
}

status pacer::add(stream_spec s) {
  auto& d = *impl_;
  if (s.session.empty()) {
    return make_error(errc::invalid_argument, "a stream needs a session id");
  }
  if (!std::isfinite(s.state.scale) || s.state.scale == 0) {
    return make_error(errc::invalid_argument, "scale must be a finite number other than 0");
  }
  if (auto st = check_play(s.first, s.state.scale); !st) {
    return st;
  }
  if (s.rtp_to.port() == 0 || s.rtcp_to.port() == 0 ||
      s.rtp_to.protocol().family() != s.rtcp_to.protocol().family()) {
    return make_error(errc::invalid_argument, "bad RTP/RTCP destination");
  }
  std::lock_guard lock(d.mu);
  if (d.fd < 0) {
    return make_error(errc::unavailable, "the pacer is not running");
  }
  if (s.rtp_to.protocol().family() != d.family) {
    return make_error(errc::invalid_argument, "the console's address family is not the pacer's");
  }
  if (d.by_session.contains(s.session)) {
    return make_error(errc::conflict, "session " + s.session + " is streaming here already");
  }
  auto st = std::make_unique<stream>();
  st->id = d.next_id++;
  st->session = s.session;
  std::memcpy(&st->rtp_to, s.rtp_to.data(), s.rtp_to.size());
  std::memcpy(&st->rtcp_to, s.rtcp_to.data(), s.rtcp_to.size());
  st->to_len = static_cast<socklen_t>(s.rtp_to.size());
  st->state = s.state;
  st->cur = {s.first.offset, 0};
  st->queue.push_back(make_queued(std::move(s.first)));
  int64_t now = unix_now_ns();
  plan first = st->next();
  double first_npt = first.kind == plan::send ? first.npt : st->queue.front().npt_at(st->cur.at);
  if (st->state.origin_unix_ns == 0 || due_ns(st->state, first_npt) < now - max_catch_up_ns) {
    st->state.origin_unix_ns = now;
    st->state.origin_npt = first_npt;
  }
  st->next_report_ns = std::max(now, due_ns(st->state, first_npt));
  d.by_session.emplace(st->session, st->id);
  auto& ref = *st;
  d.streams.emplace(ref.id, std::move(st));
  d.schedule(ref, 0);
  d.kick();
  return {};
}

status pacer::append(const std::string& session, segment_play next) {
  auto& d = *impl_;
  std::lock_guard lock(d.mu);
  auto* s = d.find(session);
  if (!s) {
    return make_error(errc::not_found, "no stream of session " + session);
  }
  if (s->hand_off) {
    return make_error(errc::conflict, "session " + session + " is being handed off");
  }
  if (auto st = check_play(next, s->state.scale); !st) {
    return st;
  }
  s->queue.push_back(make_queued(std::move(next)));
  s->bye_at = 0;  // not the end after all
  ++s->tail_serial;
  d.schedule(*s, 0);
  d.kick();
  return {};
}

status pacer::hand_off(const std::string& session) {
  auto& d = *impl_;
  std::lock_guard lock(d.mu);
  auto* s = d.find(session);
  if (!s) {
    return make_error(errc::not_found, "no stream of session " + session);
  }
  s->hand_off = true;
  d.schedule(*s, 0);
  d.kick();
  return {};
}

status pacer::program_ends(const std::string& session) {
  auto& d = *impl_;
  std::lock_guard lock(d.mu);
  auto* s = d.find(session);
  if (!s) {
    return make_error(errc::not_found, "no stream of session " + session);
  }
  s->program_ends = true;
  return {};
}

std::optional<stream_position> pacer::stop(const std::string& session) {
  auto& d = *impl_;
  std::lock_guard lock(d.mu);
  auto* s = d.find(session);
  if (!s) {
    return std::nullopt;
  }
  auto pos = d.position(*s);
  d.remove(*s);
  d.retired.clear();  // the batch is empty while the lock is free
  return pos;
}

std::optional<stream_position> pacer::hold(const std::string& session) {
  auto& d = *impl_;
  std::lock_guard lock(d.mu);
  auto* s = d.find(session);
  if (!s) {
    return std::nullopt;
  }
  // The batch is empty while the lock is free, so the position is the next datagram to go; a
  // new generation makes the stream's heap entries stale.
  s->held = true;
  ++s->gen;
  return d.position(*s);
}

status pacer::release(const std::string& session) {
  auto& d = *impl_;
  std::lock_guard lock(d.mu);
  auto* s = d.find(session);
  if (!s) {
    return make_error(errc::not_found, "no stream of session " + session);
  }
  if (s->held) {
    s->held = false;
    d.schedule(*s, 0);
    d.kick();
  }
  return {};
}

std::vector<stream_position> pacer::positions() const {
  auto& d = *impl_;
  std::lock_guard lock(d.mu);
  std::vector<stream_position> out;
  out.reserve(d.streams.size());
  for (auto& [id, s] : d.streams) {
    out.push_back(d.position(*s));
  }
  return out;
}

size_t pacer::streams() const {
  std::lock_guard lock(impl_->mu);
  return impl_->streams.size();
}

pacer_counters pacer::counters() const {
  std::lock_guard lock(impl_->mu);
  return impl_->counters;
}

}  // namespace vodgrid::push
