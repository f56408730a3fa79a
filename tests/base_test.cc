// Unit tests of base: names, segment indices, the grid configuration.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <boost/json/parse.hpp>

#include "base/base64url.h"
#include "base/cidr.h"
#include "base/config.h"
#include "base/ids.h"
#include "base/log.h"
#include "base/snapshot.h"
#include "base/thread_slot.h"

namespace vodgrid {
namespace {

TEST(Names, AcceptOnlySafeCharacters) {
  EXPECT_TRUE(program_id::parse("big_buck-bunny2"));
  EXPECT_FALSE(program_id::parse(""));
  EXPECT_FALSE(program_id::parse(".."));
  EXPECT_FALSE(program_id::parse("%2e%2e"));
  EXPECT_FALSE(program_id::parse("a/b"));
  EXPECT_FALSE(program_id::parse("a\\b"));
  EXPECT_FALSE(program_id::parse(std::string("a\0b", 3)));
  EXPECT_FALSE(program_id::parse("-rf"));
  EXPECT_FALSE(program_id::parse(std::string(65, 'a')));
  EXPECT_TRUE(program_id::parse(std::string(64, 'a')));
}

TEST(SegmentIndex, ParsesCanonicalDecimalOnly) {
  EXPECT_EQ(segment_index::parse("0")->v, 0u);
  EXPECT_EQ(segment_index::parse("999999")->v, 999999u);
  EXPECT_FALSE(segment_index::parse("1000000"));
  EXPECT_FALSE(segment_index::parse("01"));
  EXPECT_FALSE(segment_index::parse("-1"));
  EXPECT_FALSE(segment_index::parse("1e3"));
  EXPECT_FALSE(segment_index::parse("18446744073709551617"));
  EXPECT_FALSE(segment_index::parse(""));
}

TEST(Base64url, EncodesTheRfc4648VectorsInTheUrlSafeAlphabetWithoutPadding) {
  // RFC 4648 §10, padding dropped.
  EXPECT_EQ(base64url_encode(""), "");
  EXPECT_EQ(base64url_encode("f"), "Zg");
  EXPECT_EQ(base64url_encode("fo"), "Zm8");
  EXPECT_EQ(base64url_encode("foo"), "Zm9v");
  EXPECT_EQ(base64url_encode("foob"), "Zm9vYg");
  EXPECT_EQ(base64url_encode("fooba"), "Zm9vYmE");
  EXPECT_EQ(base64url_encode("foobar"), "Zm9vYmFy");
  // 0xfb 0xff: '+' and '/' in the standard alphabet.
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  std::string all;
  for (int i = 0; i < 256; ++i) {
    all.push_back(static_cast<char>(i));
  }
  for (size_t n = 0; n <= all.size(); n += 17) {
    auto text = base64url_encode(all.substr(0, n));
    EXPECT_EQ(text.size(), (n * 4 + 2) / 3);
    EXPECT_EQ(base64url_decode(text), all.substr(0, n)) << n;
  }
}

TEST(Base64url, DecodingRefusesAnythingButCanonicalUnpaddedText) {
  EXPECT_EQ(base64url_decode("Zm9vYmE"), "fooba");
  EXPECT_EQ(base64url_decode(""), "");
  const std::string_view bads[] = {"Zm9vYmE=",
                                   "Zg==",
                                   "Zm9v Ym",
                                   "Zm9v\nYmE",
                                   "Zm+v",
                                   "Zm/v",
                                   "Z",
                                   "Zm9vY",
                                   "Zh",
                                   "Zm9",
                                   std::string_view("Zm8\0", 4)};
  for (auto bad : bads) {
    EXPECT_FALSE(base64url_decode(bad)) << bad;
  }
  // "Zh" and "Zm9" carry stray bits after the last byte; "Zg" and "Zm8" are their canonical forms.
  EXPECT_EQ(base64url_decode("Zg"), "f");
  EXPECT_EQ(base64url_decode("Zm8"), "fo");
}

TEST(GridConfig, EmbeddedDefaultRoundTripsThroughToml) {
  auto g = grid_config::embedded_default("/tmp/vg", 9700);
  ASSERT_TRUE(g.registry);
  EXPECT_EQ(g.registry->listen.port, 9700);
  EXPECT_EQ(g.registry->database, "sqlite:///tmp/vg/registry.db");
  ASSERT_EQ(g.stations.size(), 2u);
  EXPECT_EQ(g.home_station()->name.str(), "home");
  EXPECT_EQ(g.stations[0].director.listen.port, 9710);
  EXPECT_EQ(g.stations[0].engines.size(), 2u);
  EXPECT_EQ(g.stations[1].director.listen.port, 9720);
  ASSERT_EQ(g.stations[1].engines.size(), 3u);
  EXPECT_EQ(g.stations[1].engines[2].listen.port, 9723);
  auto again = grid_config::parse(g.to_toml());
  ASSERT_TRUE(again) << again.err().detail;
  EXPECT_EQ(again->stations[1].engines[1].name.str(), "edge-2");
  EXPECT_EQ(again->stations[1].engines[1].data_dirs.size(), 2u);
  EXPECT_EQ(again->stations[1].engines[1].listen.port, 9722);
  EXPECT_EQ(again->station_of_engine("edge-3")->name.str(), "edge");
  EXPECT_EQ(again->station_of_engine("home-1")->name.str(), "home");
  EXPECT_EQ(again->find_engine("nope"), nullptr);
  // The station supervisors and the repair grace survive the round trip.
  EXPECT_EQ(again->stations[0].supervisor.port, 9719);
  EXPECT_EQ(again->stations[1].supervisor.port, 9729);
  EXPECT_EQ(again->stations[1].director.repair_grace, std::chrono::seconds(30));
}

TEST(GridConfig, RepairGraceAndSupervisorAreReadAndChecked) {
  std::string base = R"([[station]]
name = "s"
director = { listen = "127.0.0.1:9000", data_dir = "/tmp/s", copies = 1, repair_grace_seconds = 7 }
)";
  std::string engine = R"([[station.engine]]
name = "e1"
listen = "127.0.0.1:9001"
data_dirs = ["/tmp/e1"]
)";
  auto ok = grid_config::parse(base + "supervisor = \"127.0.0.1:9009\"\n" + engine);
  ASSERT_TRUE(ok) << ok.err().detail;
  EXPECT_EQ(ok->stations[0].director.repair_grace, std::chrono::seconds(7));
  EXPECT_EQ(ok->stations[0].supervisor.port, 9009);
  auto none = grid_config::parse(base + engine);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->stations[0].supervisor.port, 0);
  auto twice = grid_config::parse(base + "supervisor = \"127.0.0.1:9001\"\n" + engine);
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.err().detail.find("used twice"), std::string::npos) << twice.err().detail;
  auto bad = grid_config::parse(base + "supervisor = \"nope\"\n" + engine);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.err().detail.find("supervisor"), std::string::npos) << bad.err().detail;
}

TEST(GridConfig, ThreadsIsACountOrAutoAndSurvivesTheRoundTrip) {
  auto with = [](std::string director, std::string engine) {
    return "[[station]]\nname = \"s\"\ndirector = { listen = \"127.0.0.1:9000\", data_dir = "
           "\"/tmp/s\", copies = 1" +
           director + " }\n[[station.engine]]\nname = \"e1\"\nlisten = \"127.0.0.1:9001\"\n" +
           "data_dirs = [\"/tmp/e1\"]\n" + engine;
  };
  auto none = grid_config::parse(with("", ""));
  ASSERT_TRUE(none) << none.err().detail;
  EXPECT_EQ(none->stations[0].director.threads, 1u);
  EXPECT_EQ(none->stations[0].engines[0].threads, 1u);
  auto set = grid_config::parse(with(", threads = \"auto\"", "threads = 4\n"));
  ASSERT_TRUE(set) << set.err().detail;
  EXPECT_EQ(set->stations[0].director.threads, 0u);  // auto
  EXPECT_EQ(set->stations[0].engines[0].threads, 4u);
  auto again = grid_config::parse(set->to_toml());
  ASSERT_TRUE(again) << again.err().detail;
  EXPECT_EQ(again->stations[0].director.threads, 0u);
  EXPECT_EQ(again->stations[0].engines[0].threads, 4u);
  for (std::string bad : {"threads = 0\n", "threads = \"many\"\n", "threads = 257\n"}) {
    auto r = grid_config::parse(with("", bad));
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.err().detail.find("'threads' must be an integer within 1..256 or \"auto\""),
              std::string::npos)
        << r.err().detail;
  }
}

TEST(GridConfig, AnUnknownKeyIsAnErrorNamingTheFileTheTableAndTheKey) {
  std::string station = R"([[station]]
name = "s"
director = { listen = "127.0.0.1:9000", data_dir = "/tmp/s", copies = 1 }
[[station.engine]]
name = "e1"
listen = "127.0.0.1:9001"
data_dirs = ["/tmp/e1"]
)";
  struct {
    std::string text, want;
  } cases[] = {
      {station + "max_stream = 10\n",
       "grid.toml: [[station.engine]] e1: unknown key 'max_stream' (did you mean 'max_streams'?)"},
      {"[gird]\nlog_level = \"info\"\n" + station,
       "grid.toml: the top level: unknown key 'gird' (did you mean 'grid'?)"},
      {"[grid]\nheartbeat_timeout = 100\n" + station,
       "grid.toml: [grid]: unknown key 'heartbeat_timeout' (did you mean 'heartbeat_timeout_ms'?)"},
      {R"([[station]]
name = "s"
director = { listen = "127.0.0.1:9000", data_dir = "/tmp/s", copys = 1 })",
       "grid.toml: station s director: unknown key 'copys' (did you mean 'copies'?)"},
      {station + "colour = \"red\"\n", "grid.toml: [[station.engine]] e1: unknown key 'colour'"},
  };
  for (auto& c : cases) {
    auto r = grid_config::parse(c.text, "grid.toml");
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.err().detail, c.want);
  }
  ASSERT_TRUE(grid_config::parse(station, "grid.toml"));
}

TEST(GridConfig, LogFormatIsTextOrJson) {
  std::string station = R"([[station]]
name = "s"
director = { listen = "127.0.0.1:9000", data_dir = "/tmp/s", copies = 1 }
[[station.engine]]
name = "e1"
listen = "127.0.0.1:9001"
data_dirs = ["/tmp/e1"]
)";
  auto plain = grid_config::parse(station, "grid.toml");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->log_format, "text");
  auto json = grid_config::parse("[grid]\nlog_format = \"json\"\n" + station, "grid.toml");
  ASSERT_TRUE(json) << json.err().detail;
  EXPECT_EQ(json->log_format, "json");
  auto back = grid_config::parse(json->to_toml());
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->log_format, "json");
  auto bad = grid_config::parse("[grid]\nlog_format = \"xml\"\n" + station, "grid.toml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.err().detail.find("'log_format' must be \"text\" or \"json\""), std::string::npos)
      << bad.err().detail;
}

TEST(Log, AJsonLineEscapesWhatAMessageHolds) {
  std::string msg =
      "a \"quoted\" path C:\\x, a newline\nand a tab\t, a bell \x07, and \xc3\xa9t\xc3\xa9";
  auto line = log::json_line("2026-12-06T12:00:00.000Z", "info", "registry.http", msg);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  boost::system::error_code ec;
  auto v = boost::json::parse(line, ec);
  ASSERT_FALSE(ec) << line;
  auto& o = v.as_object();
  EXPECT_EQ(o.at("msg").as_string(), msg);
  EXPECT_EQ(o.at("level").as_string(), "info");
  EXPECT_EQ(o.at("logger").as_string(), "registry.http");
  EXPECT_EQ(o.at("time").as_string(), "2026-12-06T12:00:00.000Z");
  EXPECT_EQ(o.size(), 4u);
}

// A grid of one station "s" (its director on 9000) with one engine "e1" (on 9001). `station` and
// `director` are extra keys of the station's table and of the director's inline table (which has
// listen and data_dir unless `director` starts with "listen"); `engine`, extra lines of the engine.
std::string one_station(std::string station = "", std::string director = "copies = 1",
                        std::string engine = "") {
  return "[[station]]\nname = \"s\"\n" + station + "director = { " +
         (director.starts_with("listen")
              ? director
              : "listen = \"127.0.0.1:9000\", data_dir = \"/tmp/s\", " + director) +
         " }\n[[station.engine]]\nname = \"e1\"\nlisten = \"127.0.0.1:9001\"\n"
         "data_dirs = [\"/tmp/e1\"]\n" +
         engine;
}

TEST(GridConfig, AKeyLeftOutKeepsTheDefaultWrittenInTheStruct) {
  auto g = grid_config::parse(one_station());
  ASSERT_TRUE(g) << g.err().detail;
  const engine_config e;
  const director_config d;
  const timing_config t;
  const station_config s;
  auto& ge = g->stations[0].engines[0];
  auto& gd = g->stations[0].director;
  EXPECT_EQ(ge.max_streams, e.max_streams);
  EXPECT_EQ(ge.max_segment_bytes, e.max_segment_bytes);
  EXPECT_EQ(ge.max_disk_bytes, e.max_disk_bytes);
  EXPECT_EQ(gd.parallel_copies, d.parallel_copies);
  EXPECT_EQ(gd.hot_load_percent, d.hot_load_percent);
  EXPECT_EQ(gd.replica_idle, d.replica_idle);
  EXPECT_EQ(gd.repair_grace, d.repair_grace);
  EXPECT_EQ(g->stations[0].uplink_bits_per_second, s.uplink_bits_per_second);
  EXPECT_EQ(g->timing.connect, t.connect);
  EXPECT_EQ(g->timing.order, t.order);
  EXPECT_EQ(g->timing.unhealthy_after, t.unhealthy_after);
  EXPECT_EQ(g->heartbeat_timeout, grid_config{}.heartbeat_timeout);
}

TEST(GridConfig, TimingKeysAreReadCheckedAndRoundTrip) {
  auto station = one_station();
  auto g = grid_config::parse(
      "[timing]\nconnect_ms = 250\nsilence_ms = 700\ndrain_ms = 0\nunhealthy_after_ms = 900\n" +
      station);
  ASSERT_TRUE(g) << g.err().detail;
  EXPECT_EQ(g->timing.connect, std::chrono::milliseconds(250));
  EXPECT_EQ(g->timing.silence, std::chrono::milliseconds(700));
  EXPECT_EQ(g->timing.drain, std::chrono::milliseconds(0));
  EXPECT_EQ(g->timing.unhealthy_after, std::chrono::milliseconds(900));
  auto again = grid_config::parse(g->to_toml());
  ASSERT_TRUE(again) << again.err().detail;
  EXPECT_EQ(again->timing.connect, std::chrono::milliseconds(250));
  EXPECT_EQ(again->timing.drain, std::chrono::milliseconds(0));
  EXPECT_EQ(again->timing.exchange, g->timing.exchange);

  struct {
    std::string text, want;
  } cases[] = {
      {"[timing]\nconnect_ms = 0\n", "c: [timing]: 'connect_ms' must be an integer of at least 1"},
      {"[timing]\nconnect_ms = \"1s\"\n",
       "c: [timing]: 'connect_ms' must be an integer of at least 1"},
      {"[timing]\nconect_ms = 10\n",
       "c: [timing]: unknown key 'conect_ms' (did you mean 'connect_ms'?)"},
      {"[grid]\nheartbeat_interval_ms = 500\nheartbeat_timeout_ms = 400\n",
       "c: [grid]: heartbeat_timeout_ms must exceed heartbeat_interval_ms"},
  };
  for (auto& c : cases) {
    auto r = grid_config::parse(c.text + station, "c");
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.err().detail, c.want);
  }
}

TEST(GridConfig, WebOriginsAndRootAreReadCheckedAndRoundTrip) {
  auto station = one_station();
  auto d = grid_config::parse(station);
  ASSERT_TRUE(d) << d.err().detail;
  EXPECT_EQ(d->web.allow_origins, std::vector<std::string>{"*"}) << "any origin by default";
  EXPECT_TRUE(d->web.root.empty());
  auto g = grid_config::parse(
      "[web]\nallow_origins = [\"https://tv.example.com\", \"http://127.0.0.1:8080\"]\n"
      "root = \"/srv/vodgrid/web\"\n" +
      station);
  ASSERT_TRUE(g) << g.err().detail;
  auto again = grid_config::parse(g->to_toml());
  ASSERT_TRUE(again) << again.err().detail;
  EXPECT_EQ(again->web.allow_origins,
            (std::vector<std::string>{"https://tv.example.com", "http://127.0.0.1:8080"}));
  EXPECT_EQ(again->web.root, "/srv/vodgrid/web");
  auto none = grid_config::parse("[web]\nallow_origins = []\n" + station);
  ASSERT_TRUE(none) << none.err().detail;
  EXPECT_TRUE(none->web.allow_origins.empty()) << "an empty list: no page of another origin";

  std::string not_origin =
      "is not an origin as browsers send it (\"https://host[:port]\", "
      "lowercase, no path)";
  struct {
    std::string text, want;
  } cases[] = {
      {"allow_origins = [\"*\", \"https://a.example\"]",
       "c: [web]: allow_origins: \"*\" (any origin) stands alone"},
      {"allow_origins = [\"https://a.example/\"]",
       "c: [web]: allow_origins: \"https://a.example/\" " + not_origin},
      {"allow_origins = [\"https://A.example\"]",
       "c: [web]: allow_origins: \"https://A.example\" " + not_origin},
      {"allow_origins = [\"a.example\"]", "c: [web]: allow_origins: \"a.example\" " + not_origin},
      {"allow_origins = [\"null\"]", "c: [web]: allow_origins: \"null\" " + not_origin},
      {"allow_origins = \"*\"", "c: [web]: 'allow_origins' must be an array of strings"},
      {"allow_origins = [1]", "c: [web]: 'allow_origins' must be an array of strings"},
      {"alow_origins = []", "c: [web]: unknown key 'alow_origins' (did you mean 'allow_origins'?)"},
  };
  for (auto& c : cases) {
    auto r = grid_config::parse("[web]\n" + c.text + "\n" + station, "c");
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.err().detail, c.want);
  }
}

TEST(AddressRange, MatchesItsPrefixOnlyAndTakesMappedIpv4AsIpv4) {
  namespace ip = boost::asio::ip;
  auto lo = address_range::parse("127.0.0.0/8");
  ASSERT_TRUE(lo) << lo.err().detail;
  EXPECT_TRUE(lo->contains(ip::make_address("127.0.0.1")));
  EXPECT_TRUE(lo->contains(ip::make_address("127.255.3.4")));
  EXPECT_TRUE(lo->contains(ip::make_address("::ffff:127.0.0.1"))) << "a dual-stack socket's view";
  EXPECT_FALSE(lo->contains(ip::make_address("128.0.0.1")));
  EXPECT_FALSE(lo->contains(ip::make_address("::1")));
  auto test_net = address_range::parse("198.18.0.0/15");
  ASSERT_TRUE(test_net);
  EXPECT_TRUE(test_net->contains(ip::make_address("198.19.255.1")));
  EXPECT_FALSE(test_net->contains(ip::make_address("198.20.0.1")));
  auto v6 = address_range::parse("::1/128");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(ip::make_address("::1")));
  EXPECT_FALSE(v6->contains(ip::make_address("::2")));
  auto one = address_range::parse("10.1.2.3");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->str(), "10.1.2.3/32");
  auto mapped = address_range::parse("::ffff:10.0.0.0/104");
  ASSERT_TRUE(mapped) << mapped.err().detail;
  EXPECT_EQ(mapped->str(), "10.0.0.0/8") << "an IPv4 range written as IPv6 is that IPv4 range";
  EXPECT_TRUE(mapped->contains(ip::make_address("10.9.8.7")));
  EXPECT_TRUE(mapped->contains(ip::make_address("::ffff:10.9.8.7")));
  EXPECT_FALSE(mapped->contains(ip::make_address("11.0.0.1")));
  EXPECT_EQ(address_range::parse("::ffff:127.0.0.1")->str(), "127.0.0.1/32");
  auto short_mapped = address_range::parse("::ffff:0.0.0.0/95");
  ASSERT_FALSE(short_mapped);
  EXPECT_NE(short_mapped.err().detail.find("96 to 128"), std::string::npos)
      << short_mapped.err().detail;
  auto all = address_range::parse("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(ip::make_address("8.8.8.8")));
  for (std::string bad : {"10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/8x", "localhost/8",
                          "", "::1/129", "::ffff:10.0.0.1/104", "::ffff:10.0.0.0/129"}) {
    auto r = address_range::parse(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.err().detail.find("bad address range '" + bad + "'"), std::string::npos)
          << r.err().detail;
    }
  }
}

TEST(GridConfig, MetricsFromIsLoopbackByDefaultCheckedAndRoundTrips) {
  auto station = one_station();
  auto d = grid_config::parse(station);
  ASSERT_TRUE(d) << d.err().detail;
  EXPECT_EQ(d->metrics_from, (std::vector<std::string>{"127.0.0.0/8", "::1/128"}));
  auto g = grid_config::parse("[grid]\nmetrics_from = [\"10.0.0.0/8\", \"::1/128\"]\n" + station);
  ASSERT_TRUE(g) << g.err().detail;
  auto again = grid_config::parse(g->to_toml());
  ASSERT_TRUE(again) << again.err().detail;
  EXPECT_EQ(again->metrics_ranges().size(), 2u);
  EXPECT_TRUE(again->metrics_ranges()[0].contains(boost::asio::ip::make_address("10.9.8.7")));
  auto bad = grid_config::parse("[grid]\nmetrics_from = [\"10.0.0.1/8\"]\n" + station);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.err().detail.find("metrics_from"), std::string::npos) << bad.err().detail;
  EXPECT_NE(bad.err().detail.find("host bits"), std::string::npos) << bad.err().detail;
}

TEST(GridConfig, AValueOfTheWrongKindOrOutOfBoundsSaysWhich) {
  struct {
    std::string text, want;
  } cases[] = {
      {one_station("", "copies = 1", "max_streams = \"many\"\n"),
       "c: [[station.engine]] e1: 'max_streams' must be an integer of at least 1"},
      {one_station("", "copies = 1", "max_segment_bytes = 100\n"),
       "c: [[station.engine]] e1: 'max_segment_bytes' must be an integer of at least 1024"},
      {one_station("", "copies = 1", "max_disk_bytes = 1000\n"),
       "c: [[station.engine]] e1: 'max_disk_bytes' must be 0 (no budget) or at least 1 MiB"},
      {one_station("home = 1\n"), "c: [[station]] s: 'home' must be true or false"},
      {one_station("", "hot_load_percent = 101"),
       "c: station s director: 'hot_load_percent' must be an integer within 1..100"},
      {one_station("", "listen = \"127.0.0.1:9000\""), "c: station s director: needs 'data_dir'"},
  };
  for (auto& c : cases) {
    auto r = grid_config::parse(c.text, "c");
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.err().detail, c.want);
  }
}

TEST(GridConfig, RejectsBrokenConfigsWithAReason) {
  auto bad = [](std::string text) {
    auto r = grid_config::parse(text);
    EXPECT_FALSE(r) << text;
    return r ? std::string() : r.err().detail;
  };
  EXPECT_NE(bad("this is = = not toml").find("line"), std::string::npos);
  EXPECT_NE(bad("").find("no [[station]]"), std::string::npos);
  std::string base = R"([[station]]
name = "s"
director = { listen = "127.0.0.1:9000", data_dir = "/tmp/x", copies = 1 }
)";
  EXPECT_NE(bad(base).find("engine"), std::string::npos);
  EXPECT_NE(bad(base + R"([[station.engine]]
name = "e1"
listen = "127.0.0.1:9000"
data_dirs = ["/tmp/e1"]
)")
                .find("used twice"),
            std::string::npos);
  EXPECT_NE(bad(base + R"([[station.engine]]
name = "../e1"
listen = "127.0.0.1:9001"
data_dirs = ["/tmp/e1"]
)")
                .find("name"),
            std::string::npos);
  EXPECT_NE(bad(base + R"([[station.engine]]
name = "e1"
listen = "127.0.0.1:99999"
data_dirs = ["/tmp/e1"]
)")
                .find("port"),
            std::string::npos);
  auto ok = grid_config::parse(base + R"([[station.engine]]
name = "e1"
listen = "127.0.0.1:9001"
data_dirs = ["/tmp/e1"]
max_streams = 7
)");
  ASSERT_TRUE(ok) << ok.err().detail;
  EXPECT_EQ(ok->stations[0].engines[0].max_streams, 7u);
}

}  // namespace
}  // namespace vodgrid

namespace vodgrid {
namespace {

TEST(GridConfig, ARegistryNeedsExactlyOneHomeStation) {
  std::string two = R"([registry]
listen = "127.0.0.1:9000"
database = "sqlite:///tmp/r.db"
[[station]]
name = "a"
home = HOME_A
x_km = 10.5
uplink_mbps = 100
director = { listen = "127.0.0.1:9001", data_dir = "/tmp/a", copies = 1, parallel_copies = 8 }
[[station.engine]]
name = "a1"
listen = "127.0.0.1:9002"
data_dirs = ["/tmp/a1"]
[[station]]
name = "b"
director = { listen = "127.0.0.1:9003", data_dir = "/tmp/b", copies = 1 }
[[station.engine]]
name = "b1"
listen = "127.0.0.1:9004"
data_dirs = ["/tmp/b1"]
)";
  auto with = [&](std::string home) {
    auto t = two;
    t.replace(t.find("HOME_A"), 6, home);
    return grid_config::parse(t);
  };
  auto none = with("false");
  ASSERT_FALSE(none);
  EXPECT_NE(none.err().detail.find("home"), std::string::npos);
  auto ok = with("true");
  ASSERT_TRUE(ok) << ok.err().detail;
  ASSERT_TRUE(ok->registry);
  EXPECT_EQ(ok->registry->listen.port, 9000);
  EXPECT_EQ(ok->home_station()->name.str(), "a");
  EXPECT_DOUBLE_EQ(ok->stations[0].x_km, 10.5);
  EXPECT_EQ(ok->stations[0].uplink_bits_per_second, 100'000'000u);
  EXPECT_EQ(ok->stations[0].director.parallel_copies, 8u);
  auto again = grid_config::parse(ok->to_toml());
  ASSERT_TRUE(again) << again.err().detail;
  EXPECT_EQ(again->registry->database, "sqlite:///tmp/r.db");
  EXPECT_TRUE(again->stations[0].home);
  EXPECT_FALSE(again->stations[1].home);
}

TEST(GridConfig, AuthAndContentSectionsRoundTripAndAreChecked) {
  std::string base = R"([registry]
listen = "127.0.0.1:9000"
database = "sqlite:///tmp/r.db"
EXTRA
[[station]]
name = "a"
home = true
director = { listen = "127.0.0.1:9001", data_dir = "/tmp/a", copies = 1 }
[[station.engine]]
name = "a1"
listen = "LISTEN"
data_dirs = ["/tmp/a1"]
)";
  auto with = [&](std::string extra, std::string listen = "127.0.0.1:9002") {
    auto t = base;
    t.replace(t.find("EXTRA"), 5, extra);
    t.replace(t.find("LISTEN"), 6, listen);
    return grid_config::parse(t);
  };
  auto ok = with(R"([auth]
listen = "127.0.0.1:9005"
database = "sqlite:///tmp/auth.db"
demo_accounts = true
[content]
listen = "127.0.0.1:9006"
database = "sqlite:///tmp/content.db"
work_dir = "/tmp/content")");
  ASSERT_TRUE(ok) << ok.err().detail;
  ASSERT_TRUE(ok->auth && ok->content);
  EXPECT_EQ(ok->auth->listen.port, 9005);
  EXPECT_TRUE(ok->auth->demo_accounts);
  EXPECT_EQ(ok->content->work_dir, "/tmp/content");
  auto again = grid_config::parse(ok->to_toml());
  ASSERT_TRUE(again) << again.err().detail;
  EXPECT_EQ(again->content->database, "sqlite:///tmp/content.db");
  EXPECT_EQ(again->auth->database, "sqlite:///tmp/auth.db");
  EXPECT_TRUE(again->auth->demo_accounts);

  // The demo accounts on a grid that listens beyond loopback.
  auto wide = with(R"([auth]
listen = "127.0.0.1:9005"
database = "sqlite:///tmp/auth.db"
demo_accounts = true)",
                   "0.0.0.0:9002");
  ASSERT_FALSE(wide);
  EXPECT_NE(wide.err().detail.find("loopback"), std::string::npos);
  // ...or on the benchmark range 198.18.0.0/15 of the multi-host tests, and only there.
  auto demo_on = [&](std::string listen) {
    return with(R"([auth]
listen = "127.0.0.1:9005"
database = "sqlite:///tmp/auth.db"
demo_accounts = true)",
                listen);
  };
  EXPECT_TRUE(demo_on("198.18.0.2:9002"));
  EXPECT_TRUE(demo_on("198.19.255.254:9002"));
  EXPECT_FALSE(demo_on("198.20.0.2:9002"));
  EXPECT_FALSE(demo_on("198.17.255.255:9002"));
  EXPECT_FALSE(demo_on("10.0.0.2:9002"));
  // A port used twice, a missing database.
  auto twice = with(R"([content]
listen = "127.0.0.1:9001"
database = "sqlite:///tmp/c.db"
work_dir = "/tmp/c")");
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.err().detail.find("twice"), std::string::npos);
  auto nodb = with(R"([auth]
listen = "127.0.0.1:9005")");
  ASSERT_FALSE(nodb);
  EXPECT_NE(nodb.err().detail.find("database"), std::string::npos);
}

}  // namespace
}  // namespace vodgrid

#include "base/time.h"

namespace vodgrid {
namespace {

TEST(Rfc3339, ParsesZuluOffsetsAndFractionsAndFormatsBack) {
  auto z = parse_rfc3339("2026-11-25T23:59:00Z");
  ASSERT_TRUE(z) << z.err().detail;
  EXPECT_EQ(wall_clock::to_time_t(*z), 1795651140);
  EXPECT_EQ(format_rfc3339(*z), "2026-11-25T23:59:00Z");
  auto off = parse_rfc3339("2026-11-26T01:59:00+02:00");
  ASSERT_TRUE(off);
  EXPECT_EQ(*off, *z);
  auto neg = parse_rfc3339("2026-11-25t18:59:00-05:00");
  ASSERT_TRUE(neg);
  EXPECT_EQ(*neg, *z);
  auto frac = parse_rfc3339("2026-11-25T23:59:00.250Z");
  ASSERT_TRUE(frac);
  EXPECT_EQ(*frac - *z, std::chrono::milliseconds(250));
  EXPECT_EQ(format_rfc3339(*frac), "2026-11-25T23:59:00.250Z");
  auto leap = parse_rfc3339("2028-02-29T00:00:00Z");
  EXPECT_TRUE(leap);
}

TEST(Rfc3339, RefusesWhatIsNotOne) {
  for (const char* bad :
       {"", "now", "2026-11-25", "2026-11-25T23:59:00", "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-25T24:00:00Z",
        "2026-11-25T23:59:00ZZ", "2026-11-25T23:59:00+2:00", "2026-11-25T23:59:00.Z",
        "1969-12-31T23:59:59Z", "2026-11-25X23:59:00Z", "2026-11-25T23:59:00+02:00junk"}) {
    auto r = parse_rfc3339(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.err().code, errc::invalid_argument);
    }
  }
}

TEST(Rfc3339, RefusesYearsPastWhatTheClockHolds) {
  // wall_clock's nanoseconds in 64 bits end in April 2262: later years would overflow.
  EXPECT_TRUE(parse_rfc3339("2261-12-31T23:59:59Z"));
  auto r = parse_rfc3339("2262-01-01T00:00:00Z");
  ASSERT_FALSE(r);
  EXPECT_NE(r.err().detail.find("past 2261"), std::string::npos) << r.err().detail;
  EXPECT_FALSE(parse_rfc3339("9999-12-31T23:59:59Z"));
}

}  // namespace
}  // namespace vodgrid

#include <sys/stat.h>

#include <filesystem>

#include "base/fs.h"

namespace vodgrid {
namespace {

unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// A folder of its own under the system's temporary folder, removed at the end.
struct scratch {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("vodgrid-fs-" + std::to_string(::getpid()) + "-" +
                                ::testing::UnitTest::GetInstance()->current_test_info()->name());
  scratch() { std::filesystem::create_directories(path); }
  ~scratch() { std::filesystem::remove_all(path); }
};

TEST(SecretFiles, AreMade0600InA0700FolderWhateverTheUmask) {
  scratch s;
  mode_t old = ::umask(022);
  auto dir = s.path / "a" / "b";
  ASSERT_TRUE(write_secret_durably(dir / "secret", "x\n"));
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(mode_of(dir / "secret"), 0600u);
  EXPECT_EQ(*read_file(dir / "secret"), "x\n");
  // A folder that exists with group and others' bits is tightened; a file made for a database is
  // 0600 and one that exists is left as it is.
  auto open = s.path / "open";
  std::filesystem::create_directories(open);
  ::chmod(open.c_str(), 0755);
  ASSERT_TRUE(make_private_dir(open));
  EXPECT_EQ(mode_of(open), 0700u);
  ASSERT_TRUE(create_private_file(open / "db"));
  EXPECT_EQ(mode_of(open / "db"), 0600u);
  ASSERT_TRUE(write_file_durably(open / "db", "kept"));
  ::chmod((open / "db").c_str(), 0640);
  ASSERT_TRUE(create_private_file(open / "db"));
  EXPECT_EQ(*read_file(open / "db"), "kept");
  // A sticky folder (as /tmp) is shared: left alone.
  auto shared = s.path / "shared";
  std::filesystem::create_directories(shared);
  ::chmod(shared.c_str(), 01777);
  ASSERT_TRUE(make_private_dir(shared));
  EXPECT_EQ(mode_of(shared), 01777u);
  ::umask(old);
}

TEST(SecretFiles, OneReadableByGroupOrOthersIsRefusedWithItsName) {
  scratch s;
  auto f = s.path / "auth.secret";
  ASSERT_TRUE(write_secret_durably(f, "x"));
  EXPECT_TRUE(check_private_file(f));
  for (unsigned mode : {0644u, 0640u, 0604u, 0620u}) {
    ::chmod(f.c_str(), mode);
    auto st = check_private_file(f);
    ASSERT_FALSE(st) << std::oct << mode;
    EXPECT_EQ(st.err().code, errc::forbidden);
    EXPECT_NE(st.err().detail.find(f.string()), std::string::npos) << st.err().detail;
    EXPECT_EQ(st.err().detail.find('\n'), std::string::npos) << st.err().detail;
  }
  ::chmod(f.c_str(), 0400);
  EXPECT_TRUE(check_private_file(f));
  EXPECT_EQ(check_private_file(s.path / "none").err().code, errc::not_found);
}

// snapshot<T> (issue 16): a thread reads its cached copy until a newer value is stored, then the
// newer one; a value it read stays alive while its pin does, whatever is stored meanwhile.
TEST(Snapshot, ReadsTheLatestValueAndKeepsWhatWasReadAlive) {
  snapshot<std::string> s(std::make_shared<const std::string>("one"));
  snapshot_pin pin;
  const std::string* a = s.read(pin);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(*a, "one");
  EXPECT_EQ(s.read(pin), a);  // the cached copy
  s.store(std::make_shared<const std::string>("two"));
  const std::string* b = s.read(pin);
  EXPECT_EQ(*b, "two");
  EXPECT_EQ(*a, "one");  // still alive: the pin holds it
  s.store(nullptr);
  EXPECT_EQ(s.read(pin), nullptr);
  // Two snapshots are told apart in a thread's cache.
  snapshot<std::string> t(std::make_shared<const std::string>("other"));
  EXPECT_EQ(*t.read(pin), "other");
  EXPECT_EQ(s.read(pin), nullptr);
}

// One thread stores 1, 2, ... while two read: a reader never sees a value go back, and sees the
// last one at the end.
TEST(Snapshot, ReadersOnTwoThreadsSeeEveryStoreInOrder) {
  snapshot<uint64_t> s(std::make_shared<const uint64_t>(0));
  constexpr uint64_t last = 20000;
  std::atomic<bool> done{false};
  std::atomic<int> backwards{0};
  auto reader = [&] {
    uint64_t seen = 0;
    while (true) {
      bool end = done.load();
      snapshot_pin pin;
      uint64_t v = *s.read(pin);
      if (v < seen) {
        ++backwards;
      }
      seen = v;
      if (end) {
        EXPECT_EQ(v, last);
        return;
      }
    }
  };
  std::thread a(reader);
  std::thread b(reader);
  for (uint64_t i = 1; i <= last; ++i) {
    s.store(std::make_shared<const uint64_t>(i));
  }
  done = true;
  a.join();
  b.join();
  EXPECT_EQ(backwards.load(), 0);
}

// A second pin on a thread that has one is refused (snapshot.h: a read under it could free what
// the first pin's reads returned); one after the other is fine, on any thread.
TEST(SnapshotDeathTest, ANestedPinIsRefused) {
#ifdef NDEBUG
  GTEST_SKIP() << "asserted in Debug and ASan builds only";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  snapshot<std::string> s(std::make_shared<const std::string>("one"));
  {
    snapshot_pin pin;
    EXPECT_EQ(*s.read(pin), "one");
  }
  snapshot_pin again;
  EXPECT_EQ(*s.read(again), "one");
  EXPECT_DEATH(
      {
        snapshot_pin nested;
        (void)s.read(nested);
      },
      "alive on this thread already");
  std::string other;
  std::thread([&] {
    snapshot_pin its_own;
    other = *s.read(its_own);
  }).join();
  EXPECT_EQ(other, "one");
#endif
}

// thread_slot(): a number per thread, the one a server sets for its loops.
TEST(ThreadSlot, IsStablePerThreadAndSettable) {
  size_t mine = thread_slot();
  EXPECT_EQ(thread_slot(), mine);
  size_t other = mine;
  std::thread([&] { other = thread_slot(); }).join();
  EXPECT_NE(other, mine);
  std::thread([&] {
    set_thread_slot(1);
    other = thread_slot();
  }).join();
  EXPECT_EQ(other, 1u);
}

}  // namespace
}  // namespace vodgrid
