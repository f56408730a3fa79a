// Unit tests of the wire types' JSON mapping: round trips and refusals of bad input.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <functional>

#include "api/api.h"

namespace vodgrid::api {
namespace {

namespace json = boost::json;

std::string hex(char c) {
  return std::string(64, c);
}

template <class T>
std::string reason_of(const result<T>& r) {
  return r ? std::string() : r.err().detail;
}

TEST(Api, HeartbeatRoundTrips) {
  heartbeat hb;
  hb.engine = *engine_id::parse("e1");
  hb.url = "http://127.0.0.1:1";
  hb.epoch = 42;
  hb.seq = 7;
  hb.full = true;
  hb.load.active_streams = 3;
  hb.load.max_streams = 10;
  hb.added.push_back({{*program_id::parse("p"), segment_index{5}}, 1234, sha256("x")});
  hb.removed.push_back({*program_id::parse("q"), segment_index{1}});
  auto back = decode<heartbeat>(json::serialize(to_json(hb)));
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_FALSE(back->load.consoles);  // an engine that does not count them (an older version)
  hb.load.consoles = 12345;
  back = decode<heartbeat>(json::serialize(to_json(hb)));
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->load.consoles, 12345u);
  EXPECT_EQ(back->engine.str(), "e1");
  EXPECT_EQ(back->epoch, 42u);
  EXPECT_EQ(back->seq, 7u);
  EXPECT_TRUE(back->full);
  EXPECT_EQ(back->load.active_streams, 3u);
  ASSERT_EQ(back->added.size(), 1u);
  EXPECT_EQ(back->added[0].key.index.v, 5u);
  EXPECT_EQ(back->added[0].sha256, sha256("x"));
  ASSERT_EQ(back->removed.size(), 1u);
  EXPECT_EQ(back->removed[0].program.str(), "q");
}

TEST(Api, HeartbeatReplyCarriesTicketKeysOnlyWhenGivenAndChecksThem) {
  heartbeat_reply rep;
  EXPECT_EQ(json::serialize(to_json(rep)), R"({"resync":false})");
  rep.ticket_keys = {std::string(80, '\x01'), std::string(80, '\xfe')};
  rep.ticket_key_in_use = 1;
  auto back = decode<heartbeat_reply>(json::serialize(to_json(rep)));
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->ticket_keys, rep.ticket_keys);
  EXPECT_EQ(back->ticket_key_in_use, 1u);

  std::string key = R"(")" + std::string(107, 'A') + R"(")";  // base64url of 80 bytes: 107 chars
  auto reason = [](std::string body) { return reason_of(decode<heartbeat_reply>(body)); };
  EXPECT_EQ(reason(R"({"resync":true,"ticket_keys":[)" + key + "]}"), "");
  EXPECT_NE(reason(R"({"ticket_keys":["AAAA"]})").find("ticket_keys[0]: must be 80 bytes"),
            std::string::npos)
      << reason(R"({"ticket_keys":["AAAA"]})");
  EXPECT_NE(reason(R"({"ticket_keys":["not base64!"]})").find("ticket_keys[0]"), std::string::npos);
  EXPECT_NE(
      reason(R"({"ticket_keys":[)" + key + R"(],"ticket_key_in_use":1})").find("ticket_key_in_use"),
      std::string::npos);
  std::string nine = "[" + key;
  for (int i = 1; i < 9; ++i) {
    nine += "," + key;
  }
  EXPECT_NE(reason(R"({"ticket_keys":)" + nine + "]}").find("ticket_keys"), std::string::npos);
}

TEST(Api, ManifestRoundTripsAndChecksOrder) {
  program_manifest m;
  m.id = *program_id::parse("movie");
  m.title = "A \"quoted\" title";
  m.segments.push_back({segment_index{0}, 2.0, 100, sha256("a")});
  m.segments.push_back({segment_index{1}, 1.5, 200, sha256("b")});
  auto back = decode<program_manifest>(json::serialize(to_json(m)));
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->title, m.title);
  EXPECT_DOUBLE_EQ(back->duration(), 3.5);
  EXPECT_EQ(back->segments[1].sha256, sha256("b"));

  auto swapped = json::serialize(to_json(m));
  auto pos = swapped.find("\"index\":1");
  swapped.replace(pos, 9, "\"index\":7");
  EXPECT_FALSE(decode<program_manifest>(swapped));
}

TEST(Api, ManifestCarriesItsSegmentFormatOnlyWhenWebVtt) {
  program_manifest m;
  m.id = *program_id::parse("film--subs-eng");
  m.segments.push_back({segment_index{0}, 2.0, 100, sha256("a")});
  auto ts = json::serialize(to_json(m));
  EXPECT_EQ(ts.find("format"), std::string::npos) << ts;  // an MPEG-TS manifest keeps its shape
  EXPECT_EQ(decode<program_manifest>(ts)->format, segment_format::mpegts);
  m.format = segment_format::webvtt;
  auto vtt = json::serialize(to_json(m));
  EXPECT_NE(vtt.find("\"format\":\"webvtt\""), std::string::npos) << vtt;
  auto back = decode<program_manifest>(vtt);
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->format, segment_format::webvtt);
  EXPECT_EQ(segment_extension(back->format), ".vtt");
  EXPECT_STREQ(segment_content_type(back->format), "text/vtt");
  auto bad = vtt;
  bad.replace(bad.find("webvtt"), 6, "srt");
  auto refused = decode<program_manifest>(bad);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.err().detail.find("program_manifest.format"), std::string::npos)
      << refused.err().detail;
}

TEST(Api, KeyFramesRoundTripAndMustLieInOrderWithinTheSegment) {
  program_manifest m;
  m.id = *program_id::parse("movie");
  m.segments.push_back({segment_index{0}, 2.0, 18800, sha256("a"), 376, {{376, 1880, 0}}});
  m.segments[0].key_frames.push_back({9400, 940, 1.0});
  auto back = decode<program_manifest>(json::serialize(to_json(m)));
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->segments[0].psi_bytes, 376u);
  EXPECT_EQ(back->segments[0].key_frames, m.segments[0].key_frames);
  // Without an index (programs loaded before it was kept): none, and still a manifest.
  m.segments[0].key_frames.clear();
  back = decode<program_manifest>(json::serialize(to_json(m)));
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_TRUE(back->segments[0].key_frames.empty());

  auto refused = [&](std::string frames, std::string psi = "376") {
    auto body = R"({"id":"movie","title":"t","segments":[{"index":0,"duration":2,"size":18800,)"
                R"("sha256":")" +
                to_hex(sha256("a")) + R"(","psi_bytes":)" + psi + R"(,"key_frames":)" + frames +
                "}]}";
    auto r = decode<program_manifest>(body);
    EXPECT_FALSE(r) << body;
    return r ? std::string() : r.err().detail;
  };
  auto frame = [](int offset, int length, double seconds) {
    return fmt::format(R"({{"offset":{},"length":{},"seconds":{}}})", offset, length, seconds);
  };
  EXPECT_NE(refused("[" + frame(0, 100, 0) + "]").find("key_frames[0].offset"), std::string::npos);
  EXPECT_NE(refused("[" + frame(18000, 1000, 0) + "]").find("within the segment"),
            std::string::npos);
  EXPECT_NE(refused("[" + frame(376, 1880, 0) + "," + frame(1000, 100, 1) + "]")
                .find("key_frames[1].offset"),
            std::string::npos);
  EXPECT_NE(refused("[" + frame(376, 0, 0) + "]").find("offset"), std::string::npos);
  EXPECT_NE(refused("[" + frame(376, 100, 99) + "]").find("seconds"), std::string::npos);
  EXPECT_NE(refused("[]", "20000").find("psi_bytes"), std::string::npos);
  EXPECT_NE(refused("{}").find("key_frames"), std::string::npos);
}

// A program of several renditions (flow 9): the list round-trips with every attribute.
program_manifest two_renditions() {
  program_manifest m;
  m.id = *program_id::parse("film");
  m.title = "Film";
  rendition hi{"360p", rendition_kind::video, 900'000, 700'000, "avc1.64001e", 640, 360, 25};
  rendition lo{"180p", rendition_kind::video, 300'000, 250'000, "avc1.64000d", 320, 180, 25};
  rendition fra{"audio-fra", rendition_kind::audio, 128'000, 120'000, "mp4a.40.2"};
  fra.language = "fr";
  fra.title = "Français";
  fra.is_default = true;
  m.renditions = {hi, lo, fra};
  return m;
}

TEST(Api, ManifestOfRenditionsRoundTrips) {
  auto m = two_renditions();
  m.renditions[0].iframe_bandwidth = 72'000;  // its I-frame playlist's rates
  m.renditions[0].iframe_average_bandwidth = 50'000;
  auto back = decode<program_manifest>(json::serialize(to_json(m)));
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->renditions, m.renditions);
  m.renditions[0].iframe_average_bandwidth = 80'000;  // an average above the peak
  auto refused = decode<program_manifest>(json::serialize(to_json(m)));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.err().detail.find("iframe_bandwidth"), std::string::npos)
      << refused.err().detail;
  EXPECT_TRUE(back->segments.empty());
  // An ordinary manifest keeps its shape: no "renditions" field at all.
  program_manifest plain;
  plain.id = *program_id::parse("p");
  plain.segments.push_back({segment_index{0}, 2.0, 100, sha256("a")});
  EXPECT_FALSE(to_json(plain).as_object().contains("renditions"));
}

TEST(Api, RenditionIdsAndTheirParent) {
  auto film = *program_id::parse("film");
  EXPECT_EQ(rendition_id(film, "720p")->str(), "film--720p");
  EXPECT_EQ(parent_of(*rendition_id(film, "720p")), film);
  EXPECT_EQ(entitlement_of(*program_id::parse("film--audio-fra")), film);
  EXPECT_EQ(parent_of(film), std::nullopt);
  EXPECT_EQ(entitlement_of(film), film);
  EXPECT_FALSE(rendition_id(film, "a--b"));
  EXPECT_FALSE(rendition_id(film, "seventeen-chars-x"));
  EXPECT_FALSE(rendition_id(*program_id::parse("a--b"), "720p"));
  EXPECT_FALSE(rendition_id(*program_id::parse(std::string(60, 'f')), "720p"));  // past 64
}

TEST(Api, ManifestOfRenditionsRefusesBadInputNamingTheField) {
  auto reason = [](const std::function<void(json::object&)>& edit) {
    auto o = to_json(two_renditions()).as_object();
    edit(o);
    return reason_of(decode<program_manifest>(json::serialize(o)));
  };
  auto first = [](json::object& o) -> json::object& {
    return o["renditions"].as_array()[0].as_object();
  };
  EXPECT_EQ(reason([](json::object&) {}), "");
  EXPECT_EQ(reason([&](json::object& o) { first(o)["name"] = "../x"; }),
            "program_manifest.renditions[0].name: must be 1-16 characters of [A-Za-z0-9_-], "
            "without \"--\"");
  EXPECT_EQ(reason([&](json::object& o) { first(o)["name"] = "a--b"; }).substr(0, 38),
            "program_manifest.renditions[0].name: m");
  EXPECT_EQ(reason([&](json::object& o) { first(o)["kind"] = "hologram"; }),
            "program_manifest.renditions[0].kind: must be video, audio or subtitles");
  EXPECT_EQ(reason([&](json::object& o) { first(o)["bandwidth"] = 0; }),
            "program_manifest.renditions[0].bandwidth: must be in [1, 10^12] bits/s");
  EXPECT_EQ(reason([&](json::object& o) { first(o)["codecs"] = "avc1\",x"; }),
            "program_manifest.renditions[0].codecs: must hold no quote or control character");
  EXPECT_EQ(reason([&](json::object& o) { first(o)["width"] = 1.5; }),
            "program_manifest.renditions[0].width: must be a whole number of pixels");
  EXPECT_EQ(reason([&](json::object& o) {
              o["renditions"].as_array()[2].as_object()["language"] = "fr\"";
            }),
            "program_manifest.renditions[2].language: must be a language tag: letters, digits "
            "and '-'");
  EXPECT_EQ(
      reason([&](json::object& o) { o["renditions"].as_array()[1].as_object()["name"] = "360p"; }),
      "program_manifest.renditions: names a rendition twice: 360p");
  EXPECT_EQ(reason([&](json::object& o) {
              auto& a = o["renditions"].as_array();
              std::swap(a[0], a[2]);
            }),
            "program_manifest.renditions: must start with a video rendition");
  EXPECT_EQ(reason([&](json::object& o) { o["id"] = "a--b"; }),
            "program_manifest.id: must leave room for \"--{rendition}\" and hold no \"--\" itself");
  EXPECT_EQ(reason([&](json::object& o) {
              o["segments"] = json::array{json::object{
                  {"index", 0}, {"duration", 1}, {"size", 1}, {"sha256", to_hex(sha256("a"))}}};
            }),
            "program_manifest.segments: must be empty: a program of several renditions has none "
            "of its own");
  EXPECT_EQ(reason([&](json::object& o) {
              auto& a = o["renditions"].as_array();
              while (a.size() <= max_renditions) {
                a.push_back(a[0]);
              }
            }),
            "program_manifest.renditions: has more than 32 entries");
  EXPECT_EQ(reason([&](json::object& o) { o["renditions"] = json::array{}; }),
            "program_manifest.segments: must not be empty");
}

TEST(Api, DecodersRefuseBadInputNamingTheField) {
  auto reason = [](std::string body) {
    auto r = decode<fetch_order>(body);
    EXPECT_FALSE(r) << body;
    return r ? std::string() : r.err().detail;
  };
  EXPECT_NE(reason("{").find("malformed JSON"), std::string::npos);
  EXPECT_NE(reason("[]").find("object"), std::string::npos);
  EXPECT_NE(
      reason(R"({"program":"../x","index":1,"sha256":")" + hex('a') + R"(","source":"http://a/"})")
          .find("program"),
      std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":-1,"sha256":")" + hex('a') + R"(","source":"s"})")
                .find("index"),
            std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":1000000,"sha256":")" + hex('a') + R"(","source":"s"})")
                .find("index"),
            std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":1,"sha256":"abc","source":"s"})").find("sha256"),
            std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":1,"sha256":")" + hex('g') + R"(","source":"s"})")
                .find("sha256"),
            std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":1,"sha256":")" + hex('a') + R"("})").find("source"),
            std::string::npos);
  // An empty source is no URL, in either form (found by fuzz_api_json: it decoded, and its
  // encoding did not).
  EXPECT_NE(reason(R"({"program":"p","index":1,"sha256":")" + hex('a') + R"(","source":""})")
                .find("source"),
            std::string::npos);
  EXPECT_NE(reason(R"({"program":"p","index":1,"sha256":")" + hex('a') + R"(","sources":[""]})")
                .find("sources"),
            std::string::npos);
  auto ok = decode<fetch_order>(R"({"program":"p","index":1,"sha256":")" + hex('A') +
                                R"(","source":"s"})");
  EXPECT_TRUE(ok);
}

TEST(Api, ManifestRefusesAbsurdSegments) {
  auto bad = [](std::string seg) {
    return !decode<program_manifest>(R"({"id":"p","title":"t","segments":[)" + seg + "]}");
  };
  EXPECT_TRUE(bad(""));
  EXPECT_TRUE(bad(R"({"index":0,"duration":0,"size":1,"sha256":")" + hex('a') + "\"}"));
  EXPECT_TRUE(bad(R"({"index":0,"duration":1e9,"size":1,"sha256":")" + hex('a') + "\"}"));
  EXPECT_TRUE(bad(R"({"index":0,"duration":"1","size":1,"sha256":")" + hex('a') + "\"}"));
  EXPECT_TRUE(bad(R"({"index":0,"duration":1,"size":0,"sha256":")" + hex('a') + "\"}"));
  EXPECT_FALSE(bad(R"({"index":0,"duration":1,"size":1,"sha256":")" + hex('a') + "\"}"));
}

TEST(Api, ReportChangesCarryTheEngineAndFilling) {
  station_report r;
  r.load = 0.5;
  r.changes.push_back({{*program_id::parse("p"), {3}}, true});
  r.changes.push_back({{*program_id::parse("p"), {4}}, false, engine_id::parse("edge-1")});
  r.changes.push_back({{*program_id::parse("q"), {0}}, true, engine_id::parse("edge-2"), true});
  auto body = json::serialize(to_json(r));
  // A station-level change keeps the shape it always had.
  EXPECT_NE(body.find(R"({"program":"p","index":3,"held":true})"), std::string::npos) << body;
  auto back = decode<station_report>(body);
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->seq, 0u);  // unnumbered
  r.seq = 1'765'000'000'000'000;
  EXPECT_EQ(decode<station_report>(json::serialize(to_json(r)))->seq, r.seq);
  ASSERT_EQ(back->changes.size(), 3u);
  EXPECT_FALSE(back->changes[0].engine);
  EXPECT_FALSE(back->changes[0].filling);
  EXPECT_TRUE(back->changes[0].held);
  ASSERT_TRUE(back->changes[1].engine);
  EXPECT_EQ(back->changes[1].engine->str(), "edge-1");
  EXPECT_FALSE(back->changes[1].held);
  EXPECT_FALSE(back->changes[1].filling);
  EXPECT_EQ(back->changes[2].key.program.str(), "q");
  ASSERT_TRUE(back->changes[2].engine);
  EXPECT_EQ(back->changes[2].engine->str(), "edge-2");
  EXPECT_TRUE(back->changes[2].filling);
  EXPECT_TRUE(back->changes[2].held);
}

TEST(Api, ReportChangesRefuseABadEngineOrFillingWithoutOne) {
  auto reason = [](std::string change) {
    auto r = decode<station_report>(R"({"changes":[)" + change + "]}");
    EXPECT_FALSE(r) << change;
    return r ? std::string() : r.err().detail;
  };
  for (auto* engine : {R"("../e")", R"("")", "7", "null", R"("a b")"}) {
    EXPECT_NE(reason(fmt::format(R"({{"program":"p","index":0,"held":true,"engine":{}}})", engine))
                  .find("engine"),
              std::string::npos)
        << engine;
  }
  EXPECT_NE(reason(R"({"program":"p","index":0,"held":true,"filling":true})").find("filling"),
            std::string::npos);
  EXPECT_NE(
      reason(R"({"program":"p","index":0,"held":true,"engine":"e","filling":1})").find("filling"),
      std::string::npos);
  EXPECT_TRUE(decode<station_report>(
      R"({"changes":[{"program":"p","index":0,"held":true,"engine":"e","filling":false}]})"));
}

TEST(Api, AnErrorNamesTheFieldByItsPath) {
  auto hb = [](std::string added) {
    return R"({"engine":"e1","url":"u","epoch":1,"seq":1,"load":{"active_streams":0,"max_streams":1},)"
           R"("added":[)" +
           added + "]}";
  };
  auto ok = R"({"program":"p","index":0,"size":1,"sha256":")" + hex('a') + "\"}";
  EXPECT_EQ(reason_of(decode<heartbeat>(hb(ok + "," + ok))), "");
  EXPECT_EQ(
      reason_of(decode<heartbeat>(hb(ok + R"(,{"program":"p","index":1,"size":1,"sha256":"x"})"))),
      "heartbeat.added[1].sha256: must be 64 hex digits");
  EXPECT_EQ(reason_of(decode<heartbeat>(hb(ok + ",7"))), "heartbeat.added[1]: must be an object");
  EXPECT_EQ(reason_of(decode<heartbeat>(R"({"engine":"e1","url":"u","epoch":1,"seq":1,)"
                                        R"("load":{"active_streams":0}})")),
            "heartbeat.load.max_streams: is missing");
  EXPECT_EQ(
      reason_of(decode<heartbeat>(R"({"engine":"e1","url":"u","epoch":1,"seq":1,)"
                                  R"("load":{"active_streams":4294967296,"max_streams":1}})")),
      "heartbeat.load.active_streams: is out of range");
  EXPECT_EQ(
      reason_of(decode<placement>(R"({"targets":[[{"name":"e1","url":"u"},{"name":"a b"}]]})")),
      "placement.targets[0][1].name: must be 1-64 characters of [A-Za-z0-9_-]");
  EXPECT_EQ(reason_of(decode<placement>(R"({"targets":[{}]})")),
            "placement.targets[0]: must be an array");
  EXPECT_EQ(reason_of(decode<distribution>(R"({"manifest":{"id":"p","title":"t","segments":[)"
                                           R"({"index":0,"duration":1,"size":0,"sha256":")" +
                                           hex('a') + R"("}]}})")),
            "distribution.manifest.segments[0].size: must be positive");
  EXPECT_EQ(reason_of(decode<availability_change>(R"({"availability":"soon"})")),
            "availability_change.availability: must be inactive, published or withdrawn");
  // A copy's duration past what a number survives a round trip with (found by fuzz_api_json).
  auto copy = [](std::string seconds) {
    return R"({"engine":"e1","url":"u","epoch":1,"seq":1,"load":{"active_streams":0,"max_streams":1},)"
           R"("copies":[{"program":"p","index":0,"source":"s","bytes":1,"ok":true,"seconds":)" +
           seconds + "}]}";
  };
  EXPECT_EQ(reason_of(decode<heartbeat>(copy("2.5"))), "");
  EXPECT_NE(reason_of(decode<heartbeat>(copy("5e90"))).find("heartbeat.copies[0].seconds"),
            std::string::npos);
}

TEST(Api, TheFirstErrorWins) {
  // Both the engine and the url are wrong; the engine comes first.
  auto r = decode<heartbeat>(R"({"engine":"../e","url":7})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::invalid_argument);
  EXPECT_EQ(r.err().detail, "heartbeat.engine: must be 1-64 characters of [A-Za-z0-9_-]");
  // A segment out of order is named by its index, even when a later one is also bad.
  auto m = decode<program_manifest>(
      R"({"id":"p","title":"t","segments":[{"index":0,"duration":1,"size":1,"sha256":")" +
      hex('a') + R"("},{"index":2,"duration":1,"size":1,"sha256":")" + hex('a') +
      R"("},{"index":9,"duration":-1}]})");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.err().detail,
            "program_manifest.segments[1].index: must be 1: segments list indices 0, 1, 2, ... in "
            "order");
}

TEST(Api, OptionalFieldsKeepTheirDefaults) {
  auto f = decode<fetch_order>(R"({"program":"p","index":1,"sha256":")" + hex('a') +
                               R"(","sources":["http://a/","http://b/"]})");
  ASSERT_TRUE(f) << f.err().detail;
  EXPECT_TRUE(f->wait);
  EXPECT_EQ(f->size, 0u);
  EXPECT_EQ(f->sources, (std::vector<std::string>{"http://a/", "http://b/"}));
  auto d = decode<distribution>(R"({"manifest":{"id":"p","title":"t","segments":[)"
                                R"({"index":0,"duration":1,"size":1,"sha256":")" +
                                hex('a') + R"("}]}})");
  ASSERT_TRUE(d) << d.err().detail;
  EXPECT_EQ(d->prefetch, segment_index::max);
  EXPECT_EQ(d->manifest.availability, "published");
  auto c = decode<station_report>(R"({"changes":[{"program":"p","index":0}]})");
  ASSERT_TRUE(c) << c.err().detail;
  EXPECT_FALSE(c->changes[0].held);  // an absent flag is false
}

TEST(Api, HolderReplyRoundTrips) {
  holder_reply h{*engine_id::parse("edge-2"), "http://127.0.0.1:9/v1/programs/p/segments/3?sig=x"};
  auto body = json::serialize(to_json(h));
  // The shape the director has always sent.
  EXPECT_EQ(body,
            R"({"engine":"edge-2","url":"http://127.0.0.1:9/v1/programs/p/segments/3?sig=x"})");
  auto back = decode<holder_reply>(body);
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->engine.str(), "edge-2");
  EXPECT_EQ(back->url, h.url);
  auto no_url = decode<holder_reply>(R"({"engine":"edge-2"})");
  ASSERT_FALSE(no_url);
  EXPECT_EQ(no_url.err().detail, "holder_reply.url: is missing");
}

TEST(Api, SourceListRoundTripsInTheRegistrysShape) {
  source_list l;
  l.key = {*program_id::parse("movie"), segment_index{4}};
  source a{*station_id::parse("a"), "http://127.0.0.1:1", 2.5};
  a.inputs = {1e9, 100, 2, 0.5, 1.25, 0};
  source home{*station_id::parse("home"), "http://127.0.0.1:2", 40};
  home.inputs.home_penalty_seconds = 30;
  l.sources = {a, home};
  auto v = to_json(l);
  auto& o = v.as_object();
  EXPECT_EQ(o.at("program").as_string(), "movie");
  EXPECT_EQ(o.at("index").to_number<int64_t>(), 4);
  auto& first = o.at("sources").as_array().at(0).as_object();
  EXPECT_EQ(first.at("station").as_string(), "a");
  EXPECT_DOUBLE_EQ(first.at("inputs").at("load_factor").to_number<double>(), 1.25);
  auto body = json::serialize(v);
  auto back = decode<source_list>(body);
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->key, l.key);
  ASSERT_EQ(back->sources.size(), 2u);
  EXPECT_EQ(back->sources[0].station.str(), "a");
  EXPECT_EQ(back->sources[0].director_url, "http://127.0.0.1:1");
  EXPECT_DOUBLE_EQ(back->sources[0].cost, 2.5);
  EXPECT_DOUBLE_EQ(back->sources[0].inputs.available_bits_per_second, 1e9);
  EXPECT_DOUBLE_EQ(back->sources[0].inputs.distance_km, 100);
  EXPECT_DOUBLE_EQ(back->sources[0].inputs.transfer_seconds, 2);
  EXPECT_DOUBLE_EQ(back->sources[0].inputs.latency_seconds, 0.5);
  EXPECT_DOUBLE_EQ(back->sources[1].inputs.home_penalty_seconds, 30);
  EXPECT_EQ(json::serialize(to_json(*back)), body);
  // The directors' decoder of the list alone reads the same body.
  auto list = decode<std::vector<source>>(body);
  ASSERT_TRUE(list) << list.err().detail;
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].station.str(), "home");
  EXPECT_EQ(
      reason_of(decode<source_list>(R"({"program":"movie","index":4,"sources":[{"station":"a",)"
                                    R"("director_url":"u","cost":-1}]})")),
      "source_list.sources[0].cost: must be within 0..1000000000000");
}

TEST(Api, IngestRequestRoundTrips) {
  ingest_request q;
  q.id = *program_id::parse("film");
  q.title = "A film";
  q.source = "/srv/in/film.mp4";
  q.publish_at = *parse_rfc3339("2030-01-02T03:04:05Z");
  q.stations = {*station_id::parse("a"), *station_id::parse("b")};
  q.prefetch = 3;
  q.target_seconds = 2;
  q.renditions = "720p,360p";
  auto body = json::serialize(to_json(q));
  auto back = decode<ingest_request>(body);
  ASSERT_TRUE(back) << back.err().detail;
  EXPECT_EQ(back->renditions, "720p,360p");
  EXPECT_EQ(back->id.str(), "film");
  EXPECT_EQ(back->title, q.title);
  EXPECT_EQ(back->source, q.source);
  ASSERT_TRUE(back->publish_at);
  EXPECT_EQ(format_rfc3339(*back->publish_at), "2030-01-02T03:04:05Z");
  ASSERT_EQ(back->stations.size(), 2u);
  EXPECT_EQ(back->stations[1].str(), "b");
  EXPECT_EQ(back->prefetch, 3u);
  EXPECT_DOUBLE_EQ(back->target_seconds, 2);
  EXPECT_EQ(json::serialize(to_json(*back)), body);

  // What the command line sends for the defaults: "now", all stations, everything prefetched.
  auto plain =
      decode<ingest_request>(R"({"id":"x","title":"x","source":"/a.mp4","publish_at":"now",)"
                             R"("stations":null,"prefetch":null,"target_seconds":null})");
  ASSERT_TRUE(plain) << plain.err().detail;
  EXPECT_FALSE(plain->publish_at);
  EXPECT_TRUE(plain->stations.empty());
  EXPECT_EQ(plain->prefetch, segment_index::max);
  EXPECT_DOUBLE_EQ(plain->target_seconds, 4);
  EXPECT_NE(json::serialize(to_json(*plain)).find(R"("publish_at":"now")"), std::string::npos);
  // A prefetch beyond the longest program is all of it.
  auto all =
      decode<ingest_request>(R"({"id":"x","title":"x","source":"/a","prefetch":9999999999})");
  ASSERT_TRUE(all) << all.err().detail;
  EXPECT_EQ(all->prefetch, segment_index::max);
}

TEST(Api, IngestRequestRefusesWhatTheContentManagerRefuses) {
  auto reason = [](std::string body) { return reason_of(decode<ingest_request>(body)); };
  EXPECT_EQ(reason(R"({"id":"x","title":"x"})"), "ingest_request.source: is missing");
  EXPECT_EQ(reason(R"({"id":"../x","title":"x","source":"/a"})"),
            "ingest_request.id: must be 1-64 characters of [A-Za-z0-9_-]");
  EXPECT_EQ(reason(R"({"id":"x","title":"","source":"/a"})"),
            "ingest_request.title: must not be empty");
  EXPECT_EQ(
      reason(R"({"id":"x","title":"x","source":""})"),
      "ingest_request.source: must name a file, a folder with one playlist, or an http(s) URL");
  EXPECT_EQ(reason(R"({"id":"x","title":"x","source":"/a","publish_at":17})"),
            "ingest_request.publish_at: must be \"now\" or an RFC 3339 time");
  EXPECT_NE(reason(R"({"id":"x","title":"x","source":"/a","publish_at":"tomorrow"})")
                .find("ingest_request.publish_at: 'tomorrow' is not an RFC 3339 time"),
            std::string::npos);
  EXPECT_EQ(
      reason(R"({"id":"x","title":"x","source":"/a","publish_at":"2261-12-31T23:30:00-01:00"})"),
      "ingest_request.publish_at: must be within the years 1970..2261 (UTC)");
  EXPECT_EQ(reason(R"({"id":"x","title":"x","source":"/a","publish_at":"3000-01-01T00:00:00Z"})"),
            "ingest_request.publish_at: '3000-01-01T00:00:00Z' is past 2261, the last year a time "
            "here can hold");
  EXPECT_EQ(
      reason(R"({"id":"x","title":"x","source":"/a","publish_at":"1970-01-01T00:30:00+01:00"})"),
      "ingest_request.publish_at: must be within the years 1970..2261 (UTC)");
  EXPECT_EQ(reason(R"({"id":"x","title":"x","source":"/a","target_seconds":1000})"),
            "ingest_request.target_seconds: must be within 0.5..60");
  EXPECT_EQ(reason(R"({"id":"x","title":"x","source":"/a","prefetch":-1})"),
            "ingest_request.prefetch: must be a non-negative integer");
  EXPECT_EQ(reason(R"({"id":"x","title":"x","source":"/a","stations":["a",7]})"),
            "ingest_request.stations[1]: must be a string");
}

TEST(HeartbeatMark, RoundTripsAndRefusesAnythingElse) {
  auto m = parse_heartbeat_mark(to_header({18446744073709551615ull, 42}));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->epoch, 18446744073709551615ull);
  EXPECT_EQ(m->seq, 42u);
  for (std::string_view bad : {"", "/", "1/", "/2", "1-2", "1/2/3", "a/2", "1/2 ", "-1/2",
                               "18446744073709551616/1", " 1/2"}) {
    EXPECT_FALSE(parse_heartbeat_mark(bad)) << bad;
  }
}

}  // namespace
}  // namespace vodgrid::api
