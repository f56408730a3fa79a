// Unit tests of the content manager's pure decisions: the checks of an ingest request, the
// stations a publish or withdrawal must reach, the pause between push rounds, and the names and
// measures of a multivariant source's renditions.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <filesystem>

#include "content/decisions.h"

namespace vodgrid::content {
namespace {

using namespace std::chrono_literals;

station_config station(std::string_view name, bool home = false) {
  station_config s;
  s.name = *station_id::parse(name);
  s.home = home;
  return s;
}

grid_config grid(bool with_registry) {
  grid_config g;
  g.stations = {station("home", true), station("north"), station("south")};
  if (with_registry) {
    g.registry = registry_config{};
  }
  return g;
}

const wall_clock::time_point now = *parse_rfc3339("2030-01-01T12:00:00Z");

result<checked_ingest> parse(std::string_view body, bool with_registry = true) {
  return parse_ingest_request(body, grid(with_registry), now);
}

std::string local_source() {
  return std::filesystem::temp_directory_path().string();  // exists: a folder is a source
}

std::string body_with(std::string_view extra) {
  return fmt::format(R"({{"id": "p1", "title": "T", "source": "{}"{}}})", local_source(), extra);
}

TEST(ParseIngestRequest, TakesAMinimalRequestWithItsDefaults) {
  auto r = parse(body_with(""));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->program.id.str(), "p1");
  EXPECT_EQ(r->program.title, "T");
  EXPECT_EQ(r->program.source, local_source());
  EXPECT_EQ(r->program.publish_at, now);
  EXPECT_EQ(r->program.created_at, now);
  EXPECT_TRUE(r->program.targets.empty());
  EXPECT_EQ(r->target_seconds, 4);
}

TEST(ParseIngestRequest, TakesEveryOptionalField) {
  auto r = parse(body_with(R"(, "publish_at": "2030-01-02T00:00:00Z", "stations": ["north"],
                              "prefetch": 3, "target_seconds": 6)"));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->program.publish_at, *parse_rfc3339("2030-01-02T00:00:00Z"));
  EXPECT_EQ(r->program.targets, std::vector<std::string>{"north"});
  EXPECT_EQ(r->program.prefetch, 3u);
  EXPECT_EQ(r->target_seconds, 6);
}

TEST(ParseIngestRequest, RefusesBadFieldsSayingWhich) {
  auto why = [](std::string_view body, bool reg = true) {
    auto r = parse(body, reg);
    EXPECT_FALSE(r);
    return r ? std::string() : r.err().detail;
  };
  EXPECT_NE(why(R"({"id": "a/b", "title": "T", "source": "/x"})").find("ingest_request.id:"),
            std::string::npos);
  EXPECT_NE(why(R"({"id": "p", "source": "/x"})").find("ingest_request.title:"), std::string::npos);
  EXPECT_NE(why(R"({"id": "p", "title": "T", "source": "ftp://h/x"})").find("only local paths"),
            std::string::npos);
  EXPECT_NE(why(R"({"id": "p", "title": "T", "source": "relative/x"})").find("absolute path"),
            std::string::npos);
  EXPECT_NE(
      why(R"({"id": "p", "title": "T", "source": "/no/such/file/here"})").find("no such file"),
      std::string::npos);
  EXPECT_NE(why(body_with(R"(, "publish_at": "2029-01-01T00:00:00Z")")).find("in the past"),
            std::string::npos);
  EXPECT_NE(why(body_with(R"(, "publish_at": "tomorrow")")).find("RFC 3339"), std::string::npos);
  EXPECT_NE(why(body_with(R"(, "stations": ["west"])")).find("no station west"), std::string::npos);
  EXPECT_NE(
      why(body_with(R"(, "stations": ["north"])"), false).find("needs a grid with a registry"),
      std::string::npos);
  EXPECT_NE(why(body_with(R"(, "prefetch": -1)")).find("ingest_request.prefetch:"),
            std::string::npos);
  EXPECT_NE(why(body_with(R"(, "target_seconds": 0.1)")).find("0.5..60"), std::string::npos);
}

TEST(ParseIngestRequest, RefusesIdsThatLeaveNoRoomForRenditions) {
  auto why = [](std::string id) {
    auto r =
        parse(fmt::format(R"({{"id": "{}", "title": "T", "source": "{}"}})", id, local_source()));
    EXPECT_FALSE(r) << id;
    return r ? std::string() : r.err().detail;
  };
  EXPECT_NE(why("film--720p").find("reserved for renditions"), std::string::npos);
  EXPECT_NE(why(std::string(47, 'f')).find("at most 46 characters"), std::string::npos);
  EXPECT_TRUE(parse(fmt::format(R"({{"id": "{}", "title": "T", "source": "{}"}})",
                                std::string(46, 'f'), local_source())));
}

TEST(ParseIngestRequest, RenditionsAskForATranscodeIntoThoseRungs) {
  auto plain = parse(body_with(""));
  ASSERT_TRUE(plain) << plain.err().detail;
  EXPECT_FALSE(plain->transcode);
  auto aut = parse(body_with(R"(, "renditions": "auto")"));
  ASSERT_TRUE(aut) << aut.err().detail;
  EXPECT_TRUE(aut->transcode);
  EXPECT_TRUE(aut->ladder.rungs.empty());  // the source's default ladder
  auto two = parse(body_with(R"(, "renditions": "720p,360p")"));
  ASSERT_TRUE(two) << two.err().detail;
  ASSERT_EQ(two->ladder.rungs.size(), 2u);
  EXPECT_EQ(two->ladder.rungs[1].name, "360p");
  auto bad = parse(body_with(R"(, "renditions": "hd")"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.err().detail.find("'hd'"), std::string::npos) << bad.err().detail;
  auto odd = parse(body_with(R"(, "renditions": "720p;rm -rf")"));
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.err().detail.find("ingest_request.renditions"), std::string::npos);
}

// A packaged rendition of `sizes` bytes, each segment 2 s.
package_result packaged(std::vector<uint64_t> sizes, int width, int height) {
  package_result p;
  for (uint32_t i = 0; i < sizes.size(); ++i) {
    p.segments.push_back({i, 2.0, sizes[i], {}, ""});
    p.duration += 2;
  }
  p.width = width;
  p.height = height;
  p.video_frames = static_cast<int64_t>(p.duration * 25);
  return p;
}

TEST(VariantRendition, IsNamedByItsHeightAndMeasuredFromItsSegments) {
  api::variant_stream v;
  v.bandwidth = 75'900;  // what the source says: not what it measures
  v.codecs = "avc1.42c01e,mp4a.40.2";
  auto r = variant_rendition(v, 1, packaged({100'000, 300'000, 200'000}, 640, 360), {});
  EXPECT_EQ(r.name, "360p");
  EXPECT_EQ(r.kind, rendition_kind::video);
  EXPECT_EQ(r.bandwidth, 1'200'000u);        // the largest segment: 300 kB in 2 s
  EXPECT_EQ(r.average_bandwidth, 800'000u);  // 600 kB in 6 s
  EXPECT_EQ(r.codecs, v.codecs);
  EXPECT_EQ(r.width, 640);
  EXPECT_DOUBLE_EQ(r.frame_rate, 25);  // counted: the source states none
  // The same height again, and none at all.
  auto twin = variant_rendition(v, 2, packaged({1000}, 640, 360), {r});
  EXPECT_EQ(twin.name, "360p-2");
  auto third = variant_rendition(v, 3, packaged({1000}, 640, 360), {r, twin});
  EXPECT_EQ(third.name, "360p-3");
  auto unsized = variant_rendition(v, 4, packaged({1000}, 0, 0), {});
  EXPECT_EQ(unsized.name, "v4");
  // On the wire, every attribute but the folder.
  auto w = wire_rendition(r);
  EXPECT_EQ(w.name, "360p");
  EXPECT_EQ(w.kind, api::rendition_kind::video);
  EXPECT_EQ(w.bandwidth, 1'200'000u);
  EXPECT_EQ(w.height, 360);
}

TEST(ParseIngestRequest, RefusesABodyThatIsNotAJsonObject) {
  EXPECT_FALSE(parse("not json"));
  EXPECT_FALSE(parse("[]"));
}

TEST(ParseIngestRequest, AnUrlSourceNeedsNoLocalFile) {
  auto r = parse(R"({"id": "p", "title": "T", "source": "https://example.org/a.mp4"})");
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->program.source, "https://example.org/a.mp4");
}

program_entry program(program_state state, std::vector<std::string> targets = {}) {
  program_entry p;
  p.id = *program_id::parse("p1");
  p.state = state;
  p.publish_at = now;
  p.targets = std::move(targets);
  return p;
}

TEST(ChangeFor, TellsEveryStationAndTheRegistryWithTheTargetsAsHolders) {
  auto c = change_for(program(program_state::published, {"north"}), grid(true));
  EXPECT_EQ(c.change.availability, api::availability_published);
  EXPECT_EQ(c.change.publish_at, format_rfc3339(now));
  EXPECT_EQ(c.stations, (std::set<std::string>{"home", "north", "south"}));
  EXPECT_EQ(c.holders, (std::set<std::string>{"home", "north"}));
  EXPECT_TRUE(c.registry);
  EXPECT_EQ(c.attempts, 0);
}

TEST(ChangeFor, NoTargetsMeansEveryStationHoldsIt) {
  auto c = change_for(program(program_state::withdrawn), grid(true));
  EXPECT_EQ(c.change.availability, api::availability_withdrawn);
  EXPECT_EQ(c.holders, (std::set<std::string>{"home", "north", "south"}));
}

TEST(ChangeFor, WithoutARegistryOnlyTheHomeHoldsIt) {
  auto c = change_for(program(program_state::inactive, {"north"}), grid(false));
  EXPECT_EQ(c.change.availability, api::availability_inactive);
  EXPECT_EQ(c.stations, (std::set<std::string>{"home", "north", "south"}));
  EXPECT_EQ(c.holders, std::set<std::string>{"home"});
  EXPECT_FALSE(c.registry);
}

TEST(PushRetryDelay, DoublesFromATenthOfASecondUpToFiveSeconds) {
  EXPECT_EQ(push_retry_delay(0), 100ms);
  EXPECT_EQ(push_retry_delay(1), 200ms);
  EXPECT_EQ(push_retry_delay(5), 3200ms);
  EXPECT_EQ(push_retry_delay(6), 5000ms);
  EXPECT_EQ(push_retry_delay(100), 5000ms);
}

}  // namespace
}  // namespace vodgrid::content
