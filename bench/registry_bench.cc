// registry_bench: the registry's location database (registry::location_db) on its two backends,
// side by side in one run — SQLite (a file in a temporary folder, the embedded default) and
// PostgreSQL (a real server started for the run by tests/support/postgres.h) — and the ratio
// sqlite/postgresql of every figure.
//
// For each backend, in turn:
//  1. fill: N locations (default 10^7) through location_db::apply, as `stations` stations each
//     holding every segment of N / (stations × segments) programs; one apply (one transaction) per
//     station and `batch` programs;
//  2. disk: the database's bytes after the fill (SQLite: the file, its -wal and -shm after
//     `PRAGMA wal_checkpoint(TRUNCATE)`, and the holdings table and its index from dbstat;
//     PostgreSQL: pg_database_size, pg_total_relation_size('holdings') and the WAL folder);
//  3. lookups: location_db::holders of a uniformly random (program, segment) for `seconds`, one
//     thread, each call timed (p50, p99, p99.9);
//  4. updates: location_db::apply of reports of 10 changes from a random station — the shape a
//     director sends every 250 ms — for `seconds` each, in two shapes: 10 random segments of 10
//     programs, and 10 consecutive segments of one program. Reports go in pairs (the first drops
//     the 10 locations, the next restores them) so that N stays put. Every apply is one durable
//     commit (SQLite: WAL with synchronous=FULL; PostgreSQL: fsync=on, synchronous_commit=on);
//  5. memory, after the workload: SQLite runs in this process, so its figures are this process's
//     VmRSS and Pss (after malloc_trim), the growth of VmRSS since before the database was opened,
//     and SQLite's own heap (sqlite3_memory_used: its page cache, 2000 KiB by default, and
//     statements); PostgreSQL's are the sums over the server's processes (the postmaster and all
//     its children, found through /proc) of VmRSS and of Pss (which shares shared_buffers out
//     among the processes that touched it instead of counting it in each), and the growth of the
//     VmRSS sum since right after connecting. The PostgreSQL client (libpq) in this process is not
//     counted.
//
// Usage: registry_bench [--locations N] [--stations T] [--segments S] [--batch P] [--seconds D]
//                       [--backend both|sqlite|postgresql] [--seed X]
#include <malloc.h>
#include <sqlite3.h>
#include <unistd.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "registry/location_db.h"
#include "support/postgres.h"
#include "support/support.h"

namespace {

using namespace vodgrid;
using clk = std::chrono::steady_clock;

struct options {
  uint64_t locations = 10'000'000;
  uint32_t stations = 5;
  uint32_t segments = 1000;
  uint32_t batch = 200;  // programs per fill transaction (per station)
  double seconds = 10;   // per measured phase
  std::string backend = "both";
  uint64_t seed = 1;
  uint32_t programs = 0;  // locations / (stations × segments)
};

template <class T>
T must(result<T> r, std::string_view what) {
  if (!r) {
    throw std::runtime_error(
        fmt::format("{}: {}: {}", what, to_string(r.err().code), r.err().detail));
  }
  return std::move(r).value();
}

void must(status s, std::string_view what) {
  if (!s) {
    throw std::runtime_error(
        fmt::format("{}: {}: {}", what, to_string(s.err().code), s.err().detail));
  }
}

program_id program_name(uint32_t p) {
  return *program_id::parse(fmt::format("p{:06}", p));
}
station_id station_name(uint32_t s) {
  return *station_id::parse(fmt::format("s{:04}", s));
}

double since(clk::time_point t0) {
  return std::chrono::duration<double>(clk::now() - t0).count();
}

// --- /proc ------------------------------------------------------------------------------------

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A "Name:   123 kB" field of /proc/PID/status or smaps_rollup, in bytes; 0 if absent.
uint64_t kb_field(const std::string& text, std::string_view name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(name) && line.size() > name.size() && line[name.size()] == ':') {
      return std::stoull(line.substr(name.size() + 1)) * 1024;
    }
  }
  return 0;
}

struct memory {
  uint64_t rss = 0;
  uint64_t pss = 0;
  int processes = 0;
};

memory memory_of(pid_t pid) {
  auto dir = std::filesystem::path("/proc") / std::to_string(pid);
  return {kb_field(read_text(dir / "status"), "VmRSS"),
          kb_field(read_text(dir / "smaps_rollup"), "Pss"), 1};
}

// The parent of a process (from /proc/PID/stat: the field after the state), -1 if it is gone.
pid_t parent_of(pid_t pid) {
  std::string stat = read_text(std::filesystem::path("/proc") / std::to_string(pid) / "stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos) {
    return -1;
  }
  std::istringstream in(stat.substr(close + 1));
  std::string state;
  pid_t ppid = -1;
  in >> state >> ppid;
  return ppid;
}

// Memory of a process and all its children (the postmaster and its backends and workers).
memory memory_of_tree(pid_t root) {
  memory m = memory_of(root);
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) {
      continue;
    }
    pid_t pid = std::stoi(name);
    if (pid != root && parent_of(pid) == root) {
      memory c = memory_of(pid);
      m.rss += c.rss;
      m.pss += c.pss;
      m.processes += 1;
    }
  }
  return m;
}

memory memory_of_self() {
  ::malloc_trim(0);
  return memory_of(::getpid());
}

// --- measuring --------------------------------------------------------------------------------

struct latencies {
  uint64_t calls = 0;
  double seconds = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
  double per_second() const { return seconds > 0 ? static_cast<double>(calls) / seconds : 0; }
};

// Nearest-rank percentile of sorted samples (nanoseconds), in microseconds.
double percentile_us(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) {
    return 0;
  }
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

// Calls op() repeatedly for `seconds` (after a warm-up of a tenth of that, at most 2 s), timing
// each call.
latencies timed(double seconds, const std::function<void()>& op) {
  auto warm_until = clk::now() + std::chrono::duration<double>(std::min(2.0, seconds / 10));
  while (clk::now() < warm_until) {
    op();
  }
  std::vector<int64_t> samples;
  samples.reserve(1 << 20);
  auto start = clk::now();
  auto until = start + std::chrono::duration<double>(seconds);
  clk::time_point now = start;
  while (now < until) {
    auto t0 = now;
    op();
    now = clk::now();
    samples.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - t0).count());
  }
  latencies l;
  l.calls = samples.size();
  l.seconds = std::chrono::duration<double>(now - start).count();
  std::sort(samples.begin(), samples.end());
  l.p50_us = percentile_us(samples, 0.50);
  l.p99_us = percentile_us(samples, 0.99);
  l.p999_us = percentile_us(samples, 0.999);
  l.max_us = samples.empty() ? 0 : static_cast<double>(samples.back()) / 1000.0;
  return l;
}

struct disk_use {
  uint64_t total = 0;     // SQLite: file + wal + shm; PostgreSQL: pg_database_size
  uint64_t holdings = 0;  // the holdings table with its primary key index
  uint64_t wal = 0;       // PostgreSQL: the WAL folder (pg_ls_waldir)
};

struct figures {
  bool ran = false;
  uint64_t locations = 0;
  uint64_t rows = 0;
  double fill_seconds = 0;
  latencies lookup;
  latencies update10;   // 10 changes across 10 programs
  latencies update1;    // 10 changes in 1 program
  disk_use disk;        // after the fill
  disk_use disk_after;  // after the update phases
  memory mem_before, mem_after;
  uint64_t sqlite_heap = 0, sqlite_heap_high = 0;
  int64_t sqlite_cache_pages = 0, sqlite_page_size = 0;
};

int64_t scalar(db::connection& c, std::string_view sql) {
  auto rows = must(c.query(sql), sql);
  if (rows.empty() || rows.front().is_null(0)) {
    return 0;
  }
  return rows.front().i64(0);
}

uint64_t total_held(registry::location_db& db) {
  return static_cast<uint64_t>(scalar(db.connection(), "SELECT SUM(held) FROM holdings"));
}

// --- the workload -----------------------------------------------------------------------------

void fill(registry::location_db& db, const options& o, figures& f) {
  auto t0 = clk::now();
  std::vector<registry::location_change> changes;
  for (uint32_t s = 0; s < o.stations; ++s) {
    station_id st = station_name(s);
    for (uint32_t p0 = 0; p0 < o.programs; p0 += o.batch) {
      uint32_t p1 = std::min(o.programs, p0 + o.batch);
      changes.clear();
      changes.reserve(static_cast<size_t>(p1 - p0) * o.segments);
      for (uint32_t p = p0; p < p1; ++p) {
        program_id id = program_name(p);
        for (uint32_t i = 0; i < o.segments; ++i) {
          changes.push_back({segment_key{id, segment_index{i}}, true});
        }
      }
      must(db.apply(st, changes), "fill: apply");
    }
    std::fprintf(stderr, "  station %u/%u filled (%.1f s)\n", s + 1, o.stations, since(t0));
  }
  std::vector<registry::location_change>().swap(changes);
  f.fill_seconds = since(t0);
  f.locations = static_cast<uint64_t>(o.programs) * o.segments * o.stations;
  f.rows = static_cast<uint64_t>(o.programs) * o.stations;

  // Check what the fill left: every station holds every segment of a program.
  if (total_held(db) != f.locations) {
    throw std::runtime_error("the fill did not store every location");
  }
  for (uint32_t p : {0u, o.programs / 2, o.programs - 1}) {
    auto counts = must(db.counts(program_name(p)), "counts");
    auto holders = must(db.holders({program_name(p), segment_index{o.segments - 1}}), "holders");
    if (counts.size() != o.stations || holders.size() != o.stations ||
        counts.begin()->second != o.segments) {
      throw std::runtime_error(fmt::format("fill check failed for program {}", p));
    }
  }
}

void workload(registry::location_db& db, const options& o, figures& f,
              const std::function<disk_use()>& measure_disk) {
  std::fprintf(
      stderr, "  filling %llu locations (%u programs x %u segments x %u stations)\n",
      static_cast<unsigned long long>(static_cast<uint64_t>(o.programs) * o.segments * o.stations),
      o.programs, o.segments, o.stations);
  fill(db, o, f);
  std::fprintf(stderr, "  filled in %.1f s; disk\n", f.fill_seconds);
  f.disk = measure_disk();

  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<uint32_t> any_program(0, o.programs - 1);
  std::uniform_int_distribution<uint32_t> any_segment(0, o.segments - 1);
  std::uniform_int_distribution<uint32_t> any_station(0, o.stations - 1);
  std::vector<program_id> programs;
  programs.reserve(o.programs);
  for (uint32_t p = 0; p < o.programs; ++p) {
    programs.push_back(program_name(p));
  }
  std::vector<station_id> stations;
  for (uint32_t s = 0; s < o.stations; ++s) {
    stations.push_back(station_name(s));
  }

  std::fprintf(stderr, "  lookups for %.0f s\n", o.seconds);
  uint64_t found = 0;
  f.lookup = timed(o.seconds, [&] {
    segment_key k{programs[any_program(rng)], segment_index{any_segment(rng)}};
    found += must(db.holders(k), "holders").size();
  });
  if (found == 0) {
    throw std::runtime_error("lookups found nothing");
  }

  // Reports in pairs: one drops 10 locations, the next restores the same 10, so that the fill
  // stays as it was (a phase that ends after a drop gets its restore afterwards).
  struct reporter {
    std::function<std::vector<registry::location_change>()> draw;
    std::function<const station_id&()> station;
    registry::location_db& db;
    std::vector<registry::location_change> report;
    station_id st;
    bool restore = false;
    void operator()() {
      if (!restore) {
        st = station();
        report = draw();
      } else {
        for (auto& c : report) {
          c.held = true;
        }
      }
      must(db.apply(st, report), "update: apply");
      restore = !restore;
    }
  };
  auto random_station = [&]() -> const station_id& { return stations[any_station(rng)]; };
  reporter spread{
      [&] {
        std::vector<registry::location_change> r;
        for (uint32_t i = 0; i < 10; ++i) {
          r.push_back(
              {segment_key{programs[any_program(rng)], segment_index{any_segment(rng)}}, false});
        }
        return r;
      },
      random_station, db};
  reporter run{[&] {
                 std::vector<registry::location_change> r;
                 uint32_t first = any_segment(rng) % (o.segments - 9);
                 const auto& id = programs[any_program(rng)];
                 for (uint32_t i = 0; i < 10; ++i) {
                   r.push_back({segment_key{id, segment_index{first + i}}, false});
                 }
                 return r;
               },
               random_station, db};
  std::fprintf(stderr, "  updates (10 programs) for %.0f s\n", o.seconds);
  f.update10 = timed(o.seconds, std::ref(spread));
  if (spread.restore) {
    spread();
  }
  std::fprintf(stderr, "  updates (1 program) for %.0f s\n", o.seconds);
  f.update1 = timed(o.seconds, std::ref(run));
  if (run.restore) {
    run();
  }
  if (total_held(db) != f.locations) {
    throw std::runtime_error("the updates did not restore what they dropped");
  }
  f.disk_after = measure_disk();
}

figures run_sqlite(const options& o) {
  figures f;
  f.ran = true;
  test::temp_dir dir;
  auto file = dir.path() / "registry.db";
  f.mem_before = memory_of_self();
  (void)sqlite3_memory_highwater(1);  // resets the high-water mark
  auto db = must(registry::location_db::open("sqlite://" + file.string()), "open sqlite");
  auto& c = db->connection();
  f.sqlite_cache_pages = scalar(c, "PRAGMA cache_size");
  f.sqlite_page_size = scalar(c, "PRAGMA page_size");
  auto measure_disk = [&] {
    must(c.query("PRAGMA wal_checkpoint(TRUNCATE)"), "checkpoint");
    disk_use d;
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::error_code ec;
      auto n = std::filesystem::file_size(file.string() + suffix, ec);
      d.total += ec ? 0 : n;
    }
    d.holdings =
        static_cast<uint64_t>(scalar(c,
                                     "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('holdings', "
                                     "'sqlite_autoindex_holdings_1')"));
    return d;
  };
  workload(*db, o, f, measure_disk);
  f.mem_after = memory_of_self();
  f.sqlite_heap = static_cast<uint64_t>(sqlite3_memory_used());
  f.sqlite_heap_high = static_cast<uint64_t>(sqlite3_memory_highwater(0));
  return f;
}

figures run_postgresql(const options& o) {
  figures f;
  f.ran = true;
  std::fprintf(stderr, "  starting postgresql\n");
  test::postgres_server server;
  auto db = must(registry::location_db::open(server.url()), "open postgresql");
  auto& c = db->connection();
  auto backend = static_cast<pid_t>(scalar(c, "SELECT pg_backend_pid()"));
  pid_t postmaster = parent_of(backend);
  if (postmaster <= 1) {
    throw std::runtime_error("cannot find the postmaster");
  }
  f.mem_before = memory_of_tree(postmaster);
  auto measure_disk = [&] {
    disk_use d;
    d.total = static_cast<uint64_t>(scalar(c, "SELECT pg_database_size(current_database())"));
    d.holdings = static_cast<uint64_t>(scalar(c, "SELECT pg_total_relation_size('holdings')"));
    d.wal = static_cast<uint64_t>(scalar(c, "SELECT SUM(size) FROM pg_ls_waldir()"));
    return d;
  };
  workload(*db, o, f, measure_disk);
  f.mem_after = memory_of_tree(postmaster);
  return f;
}

// --- the table --------------------------------------------------------------------------------

std::string num(double v) {
  if (v == 0) {
    return "0";
  }
  double a = std::abs(v);
  if (a >= 100) {
    return fmt::format("{:.0f}", v);
  }
  if (a >= 10) {
    return fmt::format("{:.1f}", v);
  }
  return fmt::format("{:.2f}", v);
}

constexpr double mib = 1024.0 * 1024.0;

void print_table(const options& o, const figures& s, const figures& p) {
  struct line {
    std::string metric;
    std::function<double(const figures&)> get;
    bool ratio = true;
  };
  auto per_million = [](double bytes, const figures& f) {
    return f.locations == 0 ? 0 : bytes / (static_cast<double>(f.locations) / 1e6);
  };
  std::vector<line> lines = {
      {"fill: locations/s (through apply)",
       [](const figures& f) { return static_cast<double>(f.locations) / f.fill_seconds; }},
      {"fill: seconds", [](const figures& f) { return f.fill_seconds; }},
      {"lookups/s (holders, 1 thread)", [](const figures& f) { return f.lookup.per_second(); }},
      {"lookup p50, us", [](const figures& f) { return f.lookup.p50_us; }},
      {"lookup p99, us", [](const figures& f) { return f.lookup.p99_us; }},
      {"lookup p99.9, us", [](const figures& f) { return f.lookup.p999_us; }},
      {"updates/s (report of 10 changes, 10 programs)",
       [](const figures& f) { return f.update10.per_second(); }},
      {"  locations changed/s", [](const figures& f) { return 10 * f.update10.per_second(); }},
      {"  update p50, us", [](const figures& f) { return f.update10.p50_us; }},
      {"  update p99, us", [](const figures& f) { return f.update10.p99_us; }},
      {"updates/s (report of 10 changes, 1 program)",
       [](const figures& f) { return f.update1.per_second(); }},
      {"  update p50, us", [](const figures& f) { return f.update1.p50_us; }},
      {"  update p99, us", [](const figures& f) { return f.update1.p99_us; }},
      {"disk: holdings + index, bytes per 10^6 locations",
       [&](const figures& f) { return per_million(static_cast<double>(f.disk.holdings), f); }},
      {"disk: whole database, bytes per 10^6 locations",
       [&](const figures& f) { return per_million(static_cast<double>(f.disk.total), f); }},
      {"disk: holdings + index, MiB", [](const figures& f) { return f.disk.holdings / mib; }},
      {"disk: whole database, MiB", [](const figures& f) { return f.disk.total / mib; }},
      {"disk: holdings + index after the updates, MiB",
       [](const figures& f) { return f.disk_after.holdings / mib; }},
      {"disk: PostgreSQL WAL folder after the updates, MiB",
       [](const figures& f) { return f.disk_after.wal / mib; }, false},
      {"memory: RSS after the run, MiB", [](const figures& f) { return f.mem_after.rss / mib; }},
      {"memory: RSS growth over idle, MiB",
       [](const figures& f) {
         return (static_cast<double>(f.mem_after.rss) - static_cast<double>(f.mem_before.rss)) /
                mib;
       }},
      {"memory: RSS growth per 10^6 locations, KiB",
       [&](const figures& f) {
         return per_million(
                    static_cast<double>(f.mem_after.rss) - static_cast<double>(f.mem_before.rss),
                    f) /
                1024;
       }},
      {"memory: PSS after the run, MiB", [](const figures& f) { return f.mem_after.pss / mib; }},
      {"memory: SQLite heap (sqlite3_memory_used), MiB",
       [](const figures& f) { return f.sqlite_heap / mib; }, false},
      {"memory: SQLite heap high-water, MiB",
       [](const figures& f) { return f.sqlite_heap_high / mib; }, false},
  };
  size_t w = 0;
  for (auto& l : lines) {
    w = std::max(w, l.metric.size());
  }
  std::cout << fmt::format("| {:<{}} | {:>12} | {:>12} | {:>10} |\n", "metric", w, "sqlite",
                           "postgresql", "ratio s/p");
  std::cout << fmt::format("|{:-<{}}|{:->14}|{:->14}|{:->12}|\n", "", w + 2, "", "", "");
  for (auto& l : lines) {
    std::string a = s.ran ? num(l.get(s)) : "-";
    std::string b = p.ran ? num(l.get(p)) : "-";
    std::string r = "-";
    if (s.ran && p.ran && l.ratio && l.get(p) != 0) {
      r = fmt::format("{:.2f}", l.get(s) / l.get(p));
    }
    if (!l.ratio) {
      if (l.metric.find("SQLite") != std::string::npos) {
        b = "-";
      } else if (l.metric.find("PostgreSQL") != std::string::npos) {
        a = "-";
      }
    }
    std::cout << fmt::format("| {:<{}} | {:>12} | {:>12} | {:>10} |\n", l.metric, w, a, b, r);
  }
  std::cout << "\n";
  if (s.ran) {
    std::cout << fmt::format(
        "sqlite: {} locations in {} rows; page size {} B, cache_size {} ({}), WAL, "
        "synchronous=FULL; memory = this process (VmRSS/Pss after malloc_trim; idle = before "
        "opening the database)\n",
        s.locations, s.rows, s.sqlite_page_size, s.sqlite_cache_pages,
        s.sqlite_cache_pages < 0 ? fmt::format("{} KiB", -s.sqlite_cache_pages)
                                 : fmt::format("{} pages", s.sqlite_cache_pages));
  }
  if (p.ran) {
    std::cout << fmt::format(
        "postgresql: {} locations in {} rows; server of tests/support/postgres.h "
        "(shared_buffers=16MB, fsync=on, synchronous_commit=on, full_page_writes=on) on 127.0.0.1 "
        "TCP; memory = sum over the postmaster and its {} children (idle = right after "
        "connecting, {} processes)\n",
        p.locations, p.rows, p.mem_after.processes - 1, p.mem_before.processes);
  }
  std::cout << fmt::format("shape: {} programs x {} segments x {} stations; {} s per phase\n",
                           o.programs, o.segments, o.stations, o.seconds);
}

std::string first_line_with(const std::string& file, std::string_view prefix) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(prefix)) {
      auto colon = line.find(':');
      auto v = colon == std::string::npos ? line : line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "?";
}

std::string loadavg() {
  std::string s = read_text("/proc/loadavg");
  std::istringstream in(s);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"registry_bench: registry::location_db on SQLite and PostgreSQL, side by side"};
  app.add_option("--locations", o.locations, "locations held after the fill (default 10^7)");
  app.add_option("--stations", o.stations, "stations, each holding every program (default 5)")
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--segments", o.segments, "segments per program (default 1000)")
      ->check(CLI::Range(10u, segment_index::max));
  app.add_option("--batch", o.batch, "programs per fill transaction (default 200)")
      ->check(CLI::Range(1u, 1000000u));
  app.add_option("--seconds", o.seconds, "seconds per measured phase (default 10)")
      ->check(CLI::PositiveNumber);
  app.add_option("--backend", o.backend, "both, sqlite or postgresql (default both)")
      ->check(CLI::IsMember({"both", "sqlite", "postgresql"}));
  app.add_option("--seed", o.seed, "random seed (default 1)");
  CLI11_PARSE(app, argc, argv);
  uint64_t per_program = static_cast<uint64_t>(o.segments) * o.stations;
  o.programs = static_cast<uint32_t>(std::max<uint64_t>(1, o.locations / per_program));

  char date[64];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::cout << fmt::format("== registry_bench, {}, {} cores ({}), load average {}\n", date,
                           sysconf(_SC_NPROCESSORS_ONLN),
                           first_line_with("/proc/cpuinfo", "model name"), loadavg());
  std::cout << fmt::format(
      "{} locations = {} programs x {} segments x {} stations (every station holds every "
      "segment); fill batches of {} programs; {} s per phase\n\n",
      static_cast<uint64_t>(o.programs) * per_program, o.programs, o.segments, o.stations, o.batch,
      o.seconds);
  std::cout.flush();
  try {
    figures s, p;
    if (o.backend != "postgresql") {
      std::fprintf(stderr, "sqlite:\n");
      s = run_sqlite(o);
    }
    if (o.backend != "sqlite") {
      std::fprintf(stderr, "postgresql:\n");
      p = run_postgresql(o);
    }
    print_table(o, s, p);
    std::cout << fmt::format("load average at the end: {}\n", loadavg());
  } catch (const std::exception& e) {
    std::cerr << "registry_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
