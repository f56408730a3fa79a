// Test support: free ports, temporary folders, real `vodgrid` daemons as child processes, a sample
// program made by the real ffmpeg, and raw and HTTP exchanges with a server.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include "base/config.h"

#include "base/process.h"
#include "net/client.h"

namespace vodgrid::test {

// 127.0.0.1:port as a socket address.
sockaddr_in loopback(uint16_t port);
// A TCP socket (close-on-exec) connected to 127.0.0.1:port, its receive buffer set to `rcvbuf`
// bytes first if that is not 0; -1 if the connection is refused.
int connect_loopback(uint16_t port, int rcvbuf = 0);

// A TCP port on 127.0.0.1 that nothing listens on right now.
uint16_t free_port();
bool port_is_free(uint16_t port);
// Whether something accepts connections on 127.0.0.1:port (a server is ready). Not the same as
// !port_is_free: a bind also fails while a closed connection of the port is in TIME_WAIT.
bool port_is_listening(uint16_t port);
// Reserves `port` for this process: no other test process, and no later call here, hands it out.
bool claim_port(uint16_t port);
// A base port for `vodgrid up --base-port` whose default grid ports (registry base, auth base+1,
// content base+2, home base+10..12 and its supervisor base+19, edge base+20..23 and its supervisor
// base+29) are all free right now, and claimed for this process.
uint16_t free_base_port();

// A fresh folder, removed when the object goes (unless VODGRID_KEEP_TEST_DATA is set).
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The path of the built `vodgrid`.
std::string vodgrid_binary();

struct run_result {
  int status = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs a command to completion (argv[0] is a path), capturing its output.
run_result run(const std::vector<std::string>& argv,
               std::chrono::milliseconds timeout = std::chrono::minutes(3));

// Makes an HLS VOD sample with ffmpeg: `seconds` of test pattern and tone, H.264/AAC, segments of
// `segment_seconds`. Returns the playlist's path.
std::filesystem::path make_sample(const std::filesystem::path& dir, int seconds = 8,
                                  int segment_seconds = 1);

// Each packet ffmpeg demuxes from `input_args` (its options before and including `-i URL`) as
// "stream,size,md5": framemd5 without the timestamps, which RTP rebases. In order. With `log`,
// ffmpeg runs at `-v warning` and its stderr goes there (what a demuxer dropped, and why).
std::vector<std::string> ffmpeg_packets(const std::vector<std::string>& input_args,
                                        std::string* log = nullptr);

// The bytes of an HLS playlist's segments, in its order: the MPEG-TS a push of it carries.
std::string segments_of(const std::filesystem::path& playlist);

// A play of `url` by GStreamer: `gst-launch-1.0 rtspsrc location=URL EXTRA... ! rtpmp2tdepay !
// filesink`. `ts` is the MPEG-TS received; `ended` says gst-launch saw the end of stream;
// `unexpected` is what it printed on stderr besides its own teardown race (below), empty if
// nothing. GStreamer 1.22 fails its own teardown now and then: at the end of stream gst-launch
// sets the pipeline to NULL, rtspsrc queues a PAUSE and then a CLOSE, and the CLOSE cancels the
// connection while the PAUSE is being written; a cancelled write that wrote nothing is reported as
// end-of-file (gstrtspconnection.c, writev_bytes), and gst-launch exits 1 with "Could not send
// message. (Received end-of-file)" from gst_rtspsrc_pause, 23 µs after the PAUSE began, before
// any byte of it left (GST_DEBUG=rtspsrc:5). Seen over UDP (2 runs of 30 under load) and inside
// TLS (3 of 48 with -q, most runs without). So a play is judged by its bytes and its end.
struct gst_play {
  run_result run;
  bool ended = false;
  std::string unexpected;
  std::string ts;
};
gst_play gst_play_rtsp(const std::string& url, const std::vector<std::string>& extra,
                       const std::filesystem::path& work_dir);
// Success when the play reached its end with no error but GStreamer's teardown race and received
// exactly the MPEG-TS of `playlist`'s segments; else what went wrong (for EXPECT_TRUE).
::testing::AssertionResult played_whole(const gst_play& play,
                                        const std::filesystem::path& playlist);

// The status code of an RTSP response ("RTSP/1.0 200 OK..."), 0 if it is not one.
int rtsp_status(const std::string& response);

// Tokens from a grid's auth server (demo_accounts: demo/demo, admin/admin); throws on failure.
std::string login_token(const std::string& auth_url, const std::string& kind,
                        const std::string& user, const std::string& password);
// As `vodgrid up` does: every director (under its station's name) and engine gets an engine
// account whose password is its auth.secret (made here if missing). Throws on failure.
void provision_engines(const grid_config& grid, const std::string& operator_token);

// One station (director + `engines` engines) of real processes on free ports.
class station_fixture {
 public:
  struct options {
    int engines = 3;
    int copies = 2;
    int dirs_per_engine = 2;
    uint32_t max_streams = 1000;
    uint64_t max_disk_bytes = 0;
    uint32_t max_fills = 100;
    uint32_t hot_load_percent = 80;
    uint32_t replica_idle_seconds = 300;
    int heartbeat_interval_ms = 100;
    int heartbeat_timeout_ms = 1000;
    bool with_auth = false;  // an auth server (demo accounts) and tokens on
    int rtsp_session_timeout_ms = 60'000;
    // False: the engines are in the config but not started; the test speaks for them (heartbeats).
    bool start_engines = true;
    uint32_t director_threads = 1;  // the director's `threads` (VODGRID_THREADS overrides it)
  };
  station_fixture() : station_fixture(options{}) {}
  explicit station_fixture(options o);
  ~station_fixture();

  const grid_config& config() const { return grid_; }
  const std::filesystem::path& data() const { return dir_.path(); }
  std::string director_url() const;
  std::string auth_url() const { return grid_.auth->listen.url(); }
  std::string viewer_token() const { return login_token(auth_url(), "viewer", "demo", "demo"); }
  std::string operator_token() const {
    return login_token(auth_url(), "operator", "admin", "admin");
  }
  // For reads of the layout and programs (docs/protocol.md, "Who may read what"): an operator's
  // token as Bearer (logged in once) when the grid has tokens; nothing otherwise.
  net::http_client::header_list operator_headers() const {
    if (!grid_.auth) {
      return {};
    }
    if (op_token_.empty()) {
      op_token_ = operator_token();
    }
    return {{"Authorization", "Bearer " + op_token_}};
  }
  std::string engine_url(int i) const;
  std::string engine_name(int i) const;
  pid_t engine_pid(int i) const { return engines_.at(static_cast<size_t>(i)).pid(); }
  // SIGKILL (or another signal) to engine i; restart it later with start_engine.
  void kill_engine(int i, int sig = 9);
  void start_engine(int i);
  void kill_director(int sig = 9);
  void start_director();
  // `vodgrid ingest SOURCE --title T --id ID --grid DIRECTOR`.
  run_result ingest(const std::string& source, const std::string& id);
  std::string log_of(const std::string& name) const;

 private:
  temp_dir dir_;
  grid_config grid_;
  std::filesystem::path config_file_;
  mutable std::string op_token_;
  child_process director_;
  child_process auth_;
  std::vector<child_process> engines_;
};

// grid_fixture's several alike daemons over one database (issue 18, item 3). (Outside the class:
// GCC takes no default member initializers of a nested struct in a default argument.)
struct grid_replicas {
  // > 1: as many registry daemons, "registry", "registry-2", ... on their own ports (`vodgrid
  // registry --listen`), every client given all their URLs in order.
  int registries = 1;
  // > 1 (with_content): standby content managers "content-2", ... (`vodgrid content --listen`),
  // not started by the constructor.
  int content_managers = 1;
  std::chrono::milliseconds publish_lease{15'000};  // [content] publish_lease_ms
};

// A grid of real processes on free ports: a registry (SQLite unless `database` is given) and
// stations, each a director and its engines. Station 0 is the home.
// When the running test has failed: the last lines of every daemon's log in `dir` (the fixtures'
// *.log), on stderr, so that a failure in CI shows what the daemons did. The fixtures call it as
// they stop.
void print_logs_if_failed(const std::filesystem::path& dir);

class grid_fixture {
 public:
  struct station_spec {
    std::string name;
    int engines = 2;
    double x_km = 0;
    uint64_t uplink_mbps = 1000;
    double y_km = 0;
    uint32_t max_streams = 1000;
    uint32_t replica_idle_seconds = 300;
    uint64_t max_disk_bytes = 0;
    uint32_t parallel_copies = 4;
    uint32_t repair_grace_seconds = 30;
  };
  // with_content: a content manager too (SQLite catalog), started last, named "content".
  // with_auth: an auth server (demo accounts), started first; every daemon provisioned.
  using replicas = grid_replicas;
  // tls: every daemon serves HTTPS with one certificate (127.0.0.1 and localhost) of a test CA
  // (ca()), [tls] ca names it, and this process's clients and `ingest` trust it (not with
  // several registries or content managers).
  explicit grid_fixture(std::vector<station_spec> stations, std::string database = {},
                        bool with_content = false, bool with_auth = false, replicas r = {},
                        bool tls = false);
  ~grid_fixture();

  const grid_config& config() const { return grid_; }
  const std::filesystem::path& data() const { return dir_.path(); }
  // tls: the CA (PEM), and the certificate and key every daemon serves (for 127.0.0.1 and
  // localhost), e.g. for a test's own HTTPS server.
  const std::filesystem::path& ca() const { return grid_.tls.ca; }
  std::filesystem::path leaf_cert() const { return dir_.path() / "tls" / "leaf.crt"; }
  std::filesystem::path leaf_key() const { return dir_.path() / "tls" / "leaf.key"; }
  std::string registry_url() const { return grid_.registry->listen.url(); }
  // The i-th registry daemon's URL (0: "registry", 1: "registry-2", ...).
  std::string registry_url(size_t i) const { return grid_.registry->client_urls().at(i); }
  std::string content_url() const { return grid_.content->listen.url(); }
  // "content" or "content-N"'s URL.
  std::string content_url(const std::string& name) const { return url_of(name); }
  std::string auth_url() const { return grid_.auth->listen.url(); }
  std::string viewer_token() const { return login_token(auth_url(), "viewer", "demo", "demo"); }
  std::string operator_token() const {
    return login_token(auth_url(), "operator", "admin", "admin");
  }
  // For reads of the layout and programs (docs/protocol.md, "Who may read what"): an operator's
  // token as Bearer (logged in once) when the grid has tokens; nothing otherwise.
  net::http_client::header_list operator_headers() const {
    if (!grid_.auth) {
      return {};
    }
    if (op_token_.empty()) {
      op_token_ = operator_token();
    }
    return {{"Authorization", "Bearer " + op_token_}};
  }
  std::string director_url(const std::string& station) const;
  std::string engine_url(const std::string& engine) const;
  std::vector<std::string> engines_of(const std::string& station) const;
  void kill(const std::string& name, int sig = 9);  // "registry", a station or an engine
  // Sends a signal without waiting for an exit (SIGSTOP, SIGCONT).
  void signal(const std::string& name, int sig);
  void start(const std::string& name);
  // `vodgrid ingest SOURCE --title T --id ID --grid REGISTRY [--stations S]`.
  run_result ingest(const std::string& source, const std::string& id,
                    const std::string& stations = {}, const std::string& prefetch = {});
  std::string log_of(const std::string& name) const;

 private:
  std::vector<std::string> argv_of(const std::string& name) const;
  std::string url_of(const std::string& name) const;
  temp_dir dir_;
  std::vector<uint16_t> standby_content_ports_;  // content-2, content-3, ...
  grid_config grid_;
  std::filesystem::path config_file_;
  std::map<std::string, child_process> procs_;
  mutable std::string op_token_;
};

// Blocking HTTP on a private io_context.
result<net::client_response> http(boost::beast::http::verb method, const std::string& url,
                                  const std::string& body = {},
                                  net::http_client::header_list headers = {});
inline result<net::client_response> http_get(const std::string& url,
                                             net::http_client::header_list headers = {}) {
  return http(boost::beast::http::verb::get, url, {}, std::move(headers));
}

// Sends raw bytes to 127.0.0.1:port, half-closes nothing, and reads until the peer closes or
// `timeout` passes. Returns what was read ("" if nothing).
std::string raw_exchange(uint16_t port, const std::string& bytes,
                         std::chrono::milliseconds timeout = std::chrono::seconds(3));
// The status code of the first response line in `raw` ("HTTP/1.1 400 ..." → 400), 0 if none.
int status_of(const std::string& raw);

// The value of metric `name` (a regex: escape its braces) at a daemon's /metrics; 0 if it is not
// there, -1 if the daemon did not answer.
double metric(const std::string& url, const std::string& name);

// Waits until `pred` is true or `timeout` passes; returns the last value of `pred`.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

}  // namespace vodgrid::test
