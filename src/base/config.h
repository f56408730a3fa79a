// The grid's configuration: one TOML file describes every station, director and engine; each daemon
// reads it with its own name. Every key is documented in docs/configuration.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/cidr.h"
#include "base/ids.h"
#include "base/result.h"

namespace vodgrid {

struct listen_address {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  // The daemon's `tls = { cert = "...", key = "..." }` (net/tls.h loads them): set, the port serves
  // TLS only and url() names https://, so every URL the grid makes for this daemon follows.
  std::filesystem::path tls_cert;  // PEM: the certificate, then any intermediates
  std::filesystem::path tls_key;   // PEM private key, 0600
  bool tls() const { return !tls_cert.empty(); }
  std::string url() const;  // "http://host:port", or "https://host:port" with tls
  // "host:port" (a command line's --listen); errc::invalid_argument with the reason otherwise.
  static result<listen_address> parse(std::string_view text);
};

struct engine_config {
  engine_id name;
  listen_address listen;
  // One entry per independent I/O channel (claim 3); each gets its own I/O worker thread.
  std::vector<std::filesystem::path> data_dirs;
  uint32_t max_streams = 1000;  // concurrent segment streams before the director stops sending more
  uint64_t max_bytes_per_second = 0;      // outbound budget the director respects; 0 = unlimited
  uint64_t max_segment_bytes = 64 << 20;  // largest segment a PUT or fetch may carry
  // Bytes of segments the engine may hold; 0: as much as its filesystems take. Near the budget (or
  // a full filesystem) it evicts the least recently used copies the director allows.
  uint64_t max_disk_bytes = 0;
  // Copies from other engines received at once; more wait their turn (never refused for it). Each
  // holds a source connection, a file and a window of 64 KiB in memory.
  uint32_t max_fills = 100;
  // Event loops serving its HTTP port (`threads = N` or "auto": one per core; 0 here means
  // "auto"). VODGRID_THREADS overrides it (tests run the suite with 2).
  uint32_t threads = 1;
};

struct director_config {
  listen_address listen;
  std::filesystem::path data_dir;  // where the program catalog of the station is kept
  uint32_t copies = 2;             // copies of each segment placed within the station
  uint32_t parallel_copies = 4;    // segment copies from other stations in flight at once
  // A segment is hot when every engine holding it is at this share of its stream or bandwidth
  // limit: another engine then receives a replica (claims 19, 20).
  uint32_t hot_load_percent = 80;
  // A replica made for load is deleted once no console was sent to it for this long.
  std::chrono::seconds replica_idle{300};
  // An engine out of rotation this long has its segments copied again within the station until
  // every segment is back to `copies`; a shorter absence is waited out (it may come back).
  std::chrono::seconds repair_grace{30};
  // Event loops serving its HTTP port, as an engine's `threads`.
  uint32_t threads = 1;
};

struct station_config {
  station_id name;
  director_config director;
  std::vector<engine_config> engines;
  bool home = false;          // holds every program whole; the source of last resort
  double x_km = 0, y_km = 0;  // location on the operator's map, for distances
  uint64_t uplink_bits_per_second = 1'000'000'000;  // capacity toward other stations
  // Where `vodgrid station` (the station supervisor, claims 6-8) answers /healthz and /metrics;
  // port 0: it serves neither.
  listen_address supervisor{"127.0.0.1", 0};
};

struct registry_config {
  listen_address listen;  // each registry daemon's own with `vodgrid registry --listen`
  std::string database;   // a db::open URL: sqlite:///path or postgresql://...
  // Where its auth.secret is, in a grid with [auth]; empty: the SQLite database's folder.
  std::filesystem::path secret_dir;
  // The URLs directors, the content manager and the CLI reach the registry at, in order of
  // preference: several registry daemons over one highly available database (docs/registry.md).
  // Empty: listen's URL alone.
  std::vector<std::string> urls;

  // urls, or listen's URL when urls is empty.
  std::vector<std::string> client_urls() const;
};

// The authentication server (claims 5, 23-25).
struct auth_config {
  listen_address listen;
  std::string database;  // a db::open URL, as for the registry
  // Creates the accounts demo/demo (subscriber) and admin/admin (operator) at start. Set by the
  // embedded default only; the parser refuses it unless every daemon of the grid is on loopback or
  // on a test network of this machine (grid_config::all_on_test_addresses).
  bool demo_accounts = false;
  // The key-encryption key that seals the signing keys in the database (0600; made at first start
  // when the database holds no sealed key). Empty: auth.key beside a SQLite database; a
  // PostgreSQL database needs it (kept off the database's host and out of its backups).
  std::filesystem::path key_file;
};

// The content manager with its content engine (claims 2, 11).
struct content_config {
  listen_address listen;
  std::string database;            // a db::open URL: the program catalog
  std::filesystem::path work_dir;  // downloads and packaging in progress
  // The publish schedule runs on one content manager at a time, the holder of a lease in the
  // catalog's database renewed every third of this; a standby takes over this long after the
  // holder was last heard (docs/registry.md).
  std::chrono::milliseconds publish_lease{15'000};
};

// The grid's timeouts and periods ([timing]; docs/configuration.md says what each bounds).
struct timing_config {
  std::chrono::milliseconds connect{1'000};    // connecting to another daemon
  std::chrono::milliseconds silence{3'000};    // a peer silent this long within a reply is hung
  std::chrono::milliseconds exchange{10'000};  // one request to another daemon, reply and all
  std::chrono::milliseconds fill{30'000};      // an engine's fetch of one segment from a source
  // A director's order of a copy to an engine, answered when the copy is whole.
  std::chrono::milliseconds order{120'000};
  // At stop, the time requests in flight and background work get to finish.
  std::chrono::milliseconds drain{5'000};
  std::chrono::milliseconds station_silence{5'000};     // registry: a station not heard is down
  std::chrono::milliseconds placement_interval{1'000};  // director: one placement/repair scan
  // The station supervisor: a blade's /healthz every health_interval, each within health_timeout;
  // failing for unhealthy_after it is SIGKILLed and restarted; a (re)started blade is not judged
  // for start_grace (it may be opening a large store).
  std::chrono::milliseconds health_interval{500};
  std::chrono::milliseconds health_timeout{400};
  std::chrono::milliseconds unhealthy_after{2'000};
  std::chrono::milliseconds start_grace{30'000};
  // Push streaming (DESIGN.md flow 8): an engine reports each stream's position to its director
  // every push_report; a director that has not heard of a stream for push_silence resumes it on
  // another engine; an RTSP session with no request (keep-alive) for rtsp_session_timeout ends.
  std::chrono::milliseconds push_report{500};
  std::chrono::milliseconds push_silence{1'300};
  std::chrono::milliseconds rtsp_session_timeout{60'000};
  // TLS session tickets (issue 17): a director serving TLS makes a new ticket key this often; its
  // station's servers accept tickets of the key in use and the two before it.
  std::chrono::milliseconds ticket_key_period{3'600'000};
};

// What browsers get ([web]; docs/configuration.md): the cross-origin rules of the viewer endpoints
// and the directors' watch page.
struct web_config {
  // Origins whose web pages may read the viewer endpoints (playlists, redirects, segments) through
  // CORS, as browsers write them ("https://tv.example.com"); "*": any. Control endpoints never.
  std::vector<std::string> allow_origins{"*"};
  // The watch page's files (web/ of the source tree, share/vodgrid/web of an install); empty:
  // found from where the `vodgrid` binary is.
  std::filesystem::path root;
};

// TLS between the grid's daemons and toward it ([tls]; docs/configuration.md).
struct tls_config {
  // The CA (PEM, one or more certificates) every daemon and the CLI verify https:// peers
  // against; empty: the system's trust store (OpenSSL's default paths, SSL_CERT_FILE).
  std::filesystem::path ca;
};

struct grid_config {
  std::vector<station_config> stations;
  std::optional<registry_config> registry;            // none: stations stand alone
  std::optional<auth_config> auth;                    // none: no tokens are asked for
  std::optional<content_config> content;              // none: no content manager
  std::chrono::milliseconds heartbeat_interval{250};  // engine → director
  std::chrono::milliseconds heartbeat_timeout{1500};  // an engine silent this long leaves rotation
  std::string log_level = "info";
  std::string log_format = "text";  // "json": one JSON object per line, for journald and shippers
  // Client addresses (CIDR) whose requests for a daemon's /metrics are answered; others get 403.
  std::vector<std::string> metrics_from{"127.0.0.0/8", "::1/128"};
  timing_config timing;
  web_config web;
  tls_config tls;

  // Parses and validates (unique names, ports set, at least one data dir per engine).
  static result<grid_config> parse(std::string_view toml_text, std::string_view origin = "config");
  static result<grid_config> load(const std::filesystem::path& file);
  std::string to_toml() const;

  // The embedded default of `vodgrid up` (DESIGN.md): the registry on 8700 (SQLite under data_dir),
  // auth on 8701 with the demo accounts, the content manager on 8702 (SQLite, work folder under
  // data_dir), station `home` (director 8710, engines home-1, home-2) and station `edge` (director
  // 8720, engines edge-1..3), all on loopback, every port moved by base_port - 8700.
  static grid_config embedded_default(const std::filesystem::path& data_dir, uint16_t base_port);

  const station_config* find_station(std::string_view name) const;
  // metrics_from parsed (validated by parse; an entry that is not a range is left out).
  std::vector<address_range> metrics_ranges() const;
  // Every daemon listens on a loopback address or in 198.18.0.0/15, the range RFC 2544 reserves
  // for benchmark networks, which the multi-host tests and scripts/netns-grid give their network
  // namespaces: addresses no real network routes, where the demo accounts harm nobody.
  bool all_on_test_addresses() const;
  const station_config* home_station() const;
  // Whether station `s`'s director hands session-ticket keys to its engines (issue 17, item 2):
  // only over TLS (its director serves TLS) and only to its own engines, which an auth server's
  // tokens tell from anyone else; otherwise each engine keeps OpenSSL's own per-process tickets.
  bool shares_ticket_keys(const station_config& s) const {
    return s.director.listen.tls() && auth.has_value();
  }
  // The station an engine belongs to, or nullptr.
  const station_config* station_of_engine(std::string_view engine) const;
  const engine_config* find_engine(std::string_view name) const;
};

}  // namespace vodgrid
