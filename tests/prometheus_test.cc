// Issue 14's Prometheus acceptance test: Debian's prometheus, started here on a free port with the
// shipped deploy/prometheus/ config (the registry's URL and 1 s intervals substituted) and rules,
// finds every daemon of a grid through the registry's service discovery and scrapes it; after
// plays at the edge, the recording rules give the edge its hit ratio, redirects/s, bytes/s and p99.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <cmath>
#include <csignal>
#include <set>
#include <stdexcept>
#include <string>

#include "base/fs.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

const char* const prometheus_binary = "/usr/bin/prometheus";

// Replaces every `from` in `text`, which must hold it exactly `times` times: a change of the
// shipped file that the substitutions no longer fit fails the test loudly.
void replace(std::string& text, const std::string& from, const std::string& to, int times = 1) {
  int found = 0;
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
    ++found;
  }
  if (found != times) {
    throw std::runtime_error(
        fmt::format("prometheus.yml: `{}` found {} times, not {}", from, found, times));
  }
}

std::string url_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// Debian's prometheus as this test's child: its own port, storage and config in a temporary
// folder, so that it never meets a system service the package may have started. Stopped (SIGTERM,
// then SIGKILL) when the object goes.
class prometheus_server {
 public:
  explicit prometheus_server(const std::string& registry_url) {
    auto shipped = read_file(VODGRID_PROMETHEUS_DIR "/prometheus.yml");
    if (!shipped) {
      throw std::runtime_error("cannot read " VODGRID_PROMETHEUS_DIR "/prometheus.yml");
    }
    std::string config = *shipped;
    replace(config, "scrape_interval: 15s", "scrape_interval: 1s");
    replace(config, "evaluation_interval: 15s", "evaluation_interval: 1s");
    replace(config, "scrape_timeout: 10s", "scrape_timeout: 1s");
    replace(config, "refresh_interval: 30s", "refresh_interval: 1s");
    replace(config, "http://127.0.0.1:8700/v1/prometheus/targets",
            registry_url + "/v1/prometheus/targets");
    replace(config, "  - rules/", "  - " VODGRID_PROMETHEUS_DIR "/rules/", 2);
    auto file = dir_.path() / "prometheus.yml";
    if (!write_file_durably(file, config)) {
      throw std::runtime_error("cannot write " + file.string());
    }
    port_ = free_port();
    auto p = child_process::spawn(
        {prometheus_binary, "--config.file=" + file.string(),
         "--storage.tsdb.path=" + (dir_.path() / "data").string(),
         fmt::format("--web.listen-address=127.0.0.1:{}", port_), "--log.level=warn"},
        dir_.path() / "prometheus.log");
    if (!p) {
      throw std::runtime_error("cannot start prometheus");
    }
    proc_ = std::move(*p);
  }
  ~prometheus_server() { proc_.stop(std::chrono::seconds(5)); }
  prometheus_server(const prometheus_server&) = delete;
  prometheus_server& operator=(const prometheus_server&) = delete;

  std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }
  bool ready() {
    auto r = http_get(url() + "/-/ready");
    return proc_.running() && r && r->status == 200;
  }
  std::string log() const {
    auto t = read_file(dir_.path() / "prometheus.log");
    return t ? *t : std::string();
  }
  // The instant vector of `expr` now (/api/v1/query): each series' labels and value; nullopt when
  // the query fails.
  struct sample {
    json::object labels;
    double value = 0;
  };
  std::optional<std::vector<sample>> query(const std::string& expr) {
    auto r = http_get(url() + "/api/v1/query?query=" + url_encode(expr));
    if (!r || r->status != 200) {
      return std::nullopt;
    }
    auto doc = json::parse(r->body);
    std::vector<sample> out;
    for (auto& s : doc.at("data").at("result").as_array()) {
      auto& o = s.as_object();
      // "value": [time, "text"]; the text may be "NaN" or "+Inf".
      auto text = std::string(o.at("value").as_array().at(1).as_string());
      out.push_back({o.at("metric").as_object(), std::stod(text)});
    }
    return out;
  }
  // The one value of `expr`, nullopt when it has none (or several).
  std::optional<double> value(const std::string& expr) {
    auto v = query(expr);
    if (!v || v->size() != 1) {
      return std::nullopt;
    }
    return v->front().value;
  }

 private:
  temp_dir dir_;
  uint16_t port_ = 0;
  child_process proc_;
};

// The `host:port` of every target the registry's service discovery lists.
std::set<std::string> discovered_targets(const std::string& registry_url) {
  auto r = http_get(registry_url + "/v1/prometheus/targets");
  if (!r || r->status != 200) {
    throw std::runtime_error("the registry does not answer its service discovery");
  }
  std::set<std::string> out;
  auto groups = json::parse(r->body);
  for (auto& group : groups.as_array()) {
    for (auto& t : group.at("targets").as_array()) {
      out.emplace(t.as_string());
    }
  }
  return out;
}

// Segments of `program` the registry records at `station`; 0 when it cannot tell.
size_t held_at(const grid_fixture& g, const std::string& program, const std::string& station) {
  auto r = http_get(g.registry_url() + "/v1/programs/" + program);
  if (!r || r->status != 200) {
    return 0;
  }
  auto doc = json::parse(r->body);
  auto* held = doc.as_object().at("held").as_object().if_contains(station);
  return held ? held->to_number<size_t>() : 0;
}

TEST(Prometheus, ScrapesEveryDaemonTheRegistryListsAndTheRulesMeasureAPlayAtTheEdge) {
  ASSERT_TRUE(std::filesystem::exists(prometheus_binary))
      << prometheus_binary << " is missing: scripts/install-deps.sh installs Debian's prometheus";
  grid_fixture g({{"home", 2, 0}, {"edge", 2, 100}}, {}, /*with_content=*/true);
  temp_dir src;
  make_sample(src.path(), 8, 1);
  auto in = g.ingest(src.path().string(), "film", "edge");
  ASSERT_EQ(in.status, 0) << in.err << g.log_of("content");
  std::string playlist = g.director_url("edge") + "/v1/programs/film/index.m3u8";
  // The edge holds the whole program before the plays (ingested for it), so that every console
  // request there is a hit.
  size_t segments = 0;
  ASSERT_TRUE(eventually(
      [&] {
        auto r = http_get(playlist);
        segments = 0;
        for (auto at = r ? r->body.find("#EXTINF") : std::string::npos; at != std::string::npos;
             at = r->body.find("#EXTINF", at + 1)) {
          ++segments;
        }
        return r && r->status == 200 && segments > 0 && held_at(g, "film", "edge") == segments;
      },
      30s))
      << segments << " segments, " << held_at(g, "film", "edge") << " at the edge";

  prometheus_server prom(g.registry_url());
  ASSERT_TRUE(eventually([&] { return prom.ready(); }, 30s)) << prom.log();

  // Every daemon the registry lists is scraped and up: registry, content manager, two directors,
  // four engines.
  auto targets = discovered_targets(g.registry_url());
  EXPECT_EQ(targets.size(), 8u);
  std::set<std::string> up;
  bool all_up = eventually(
      [&] {
        auto v = prom.query("up");
        up.clear();
        for (auto& s : v.value_or(std::vector<prometheus_server::sample>{})) {
          if (s.value == 1) {
            up.emplace(s.labels.at("instance").as_string());
          }
        }
        return v && v->size() == targets.size() && up == targets;
      },
      30s);
  EXPECT_TRUE(all_up) << fmt::format("up: {}\nlisted: {}\n", fmt::join(up, " "),
                                     fmt::join(targets, " "))
                      << prom.log();
  // The labels of the discovery come with every series: each engine of the edge by name.
  auto edge_engines = prom.query(R"(up{role="engine",station="edge"})");
  ASSERT_TRUE(edge_engines);
  std::set<std::string> names;
  for (auto& s : *edge_engines) {
    names.emplace(s.labels.at("daemon").as_string());
  }
  EXPECT_EQ(names, (std::set<std::string>{"edge-1", "edge-2"}));

  // Two plays at the edge, the second once Prometheus has scraped the first: a series a daemon
  // makes at its first increment (a counter by label) grows between two scrapes too.
  auto play = [&] { return run({vodgrid_binary(), "play", playlist, "--json"}, 60s); };
  auto first = play();
  ASSERT_EQ(first.status, 0) << first.out << first.err;
  ASSERT_TRUE(eventually(
      [&] { return prom.value(R"(vodgrid_director_redirects_total{station="edge"})") > 0.0; }, 30s))
      << prom.log();
  auto second = play();
  ASSERT_EQ(second.status, 0) << second.out << second.err;
  double played_bytes = 0, played_segments = 0;
  for (auto* p : {&first, &second}) {
    auto report = json::parse(p->out);
    played_bytes += report.at("bytes").to_number<double>();
    played_segments += report.at("segments").to_number<double>();
  }
  ASSERT_GT(played_bytes, 0);

  // The rules' five-minute window began before Prometheus did: a rate is the increase seen
  // (extrapolated towards the window's ends, never less) over 300 s: once both plays are scraped,
  // at least what the consoles received and asked for. The bytes include the copies between the
  // edge's engines.
  std::optional<double> hit_ratio, bytes, redirects, p99;
  bool measured = eventually(
      [&] {
        hit_ratio =
            prom.value(R"(station:vodgrid_engine_segment_hit_ratio:rate5m{station="edge"})");
        bytes = prom.value(R"(station:vodgrid_engine_served_bytes:rate5m{station="edge"})");
        redirects = prom.value(R"(station:vodgrid_director_redirects:rate5m{station="edge"})");
        p99 = prom.value(
            R"(station:vodgrid_director_redirect_duration_seconds:p99_rate5m{station="edge"})");
        return hit_ratio && bytes && *bytes * 300 >= 0.999 * played_bytes && redirects &&
               *redirects * 300 >= 0.999 * played_segments && p99 && !std::isnan(*p99);
      },
      30s);
  ASSERT_TRUE(measured) << "hit ratio " << hit_ratio.value_or(-1) << ", bytes/s "
                        << bytes.value_or(-1) << ", redirects/s " << redirects.value_or(-1)
                        << ", p99 " << p99.value_or(-1) << "; played " << played_bytes << " bytes, "
                        << played_segments << " segments\n"
                        << prom.log();
  EXPECT_EQ(*hit_ratio, 1.0);
  // The quantile lies within the histogram's buckets (up to 10 s) and above nothing.
  EXPECT_GT(*p99, 0.0);
  EXPECT_LE(*p99, 10.0);
}

}  // namespace
}  // namespace vodgrid::test
