// The content manager's catalog (content::catalog) on both backends: SQLite in a temporary folder
// and a real PostgreSQL server. The lifecycle's transitions, duplicates, the history of changes,
// what the packager found and the segment list.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "content/catalog.h"
#include "support/postgres.h"
#include "support/support.h"

namespace vodgrid::content {
namespace {

using namespace std::chrono_literals;

class Catalog : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string url = GetParam() == "sqlite" ? "sqlite://" + (dir_.path() / "c.db").string()
                                             : test::fresh_postgres_schema("content");
    auto c = db::open(url);
    ASSERT_TRUE(c) << c.err().detail;
    conn_ = std::move(*c);
    auto cat = catalog::open(*conn_);
    ASSERT_TRUE(cat) << cat.err().detail;
    cat_ = std::move(*cat);
  }

  program_entry film(std::string id = "film") {
    program_entry p;
    p.id = *program_id::parse(id);
    p.title = "A film";
    p.source = "/srv/film.mp4";
    p.created_at = t0;
    p.publish_at = t0 + 1h;
    p.targets = {"edge", "north"};
    p.prefetch = 3;
    return p;
  }

  test::temp_dir dir_;
  std::unique_ptr<db::connection> conn_;
  std::unique_ptr<catalog> cat_;
  const wall_clock::time_point t0 = *parse_rfc3339("2026-11-25T20:00:00Z");
};

TEST_P(Catalog, ARecordRoundTrips) {
  ASSERT_TRUE(cat_->create(film(), "here"));
  auto got = cat_->get(*program_id::parse("film"));
  ASSERT_TRUE(got && *got);
  auto& p = **got;
  EXPECT_EQ(p.title, "A film");
  EXPECT_EQ(p.source, "/srv/film.mp4");
  EXPECT_EQ(p.state, program_state::ingesting);
  EXPECT_EQ(p.publish_at, t0 + 1h);
  EXPECT_EQ(p.targets, (std::vector<std::string>{"edge", "north"}));
  EXPECT_EQ(p.prefetch, 3u);
  EXPECT_TRUE(p.segments.empty());
  auto none = cat_->get(*program_id::parse("nosuch"));
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

TEST_P(Catalog, PackagingResultsAndSegmentsAreKept) {
  auto p = film();
  ASSERT_TRUE(cat_->create(p, "here"));
  p.duration = 12.5;
  p.video_codec = "h264";
  p.audio_codec = "aac";
  p.width = 640;
  p.height = 360;
  p.bitrate = 1'234'567;
  p.video_frames = 312;
  for (uint32_t i = 0; i < 3; ++i) {
    api::segment_entry e;
    e.index = segment_index{i};
    e.duration = 4 + i * 0.25;
    e.size = 1000 + i;
    e.sha256 = sha256(fmt::format("segment {}", i));
    p.segments.push_back(e);
  }
  ASSERT_TRUE(cat_->set_packaged(p));
  auto got = cat_->get(p.id);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->video_codec, "h264");
  EXPECT_EQ((*got)->height, 360);
  EXPECT_EQ((*got)->bitrate, 1'234'567u);
  EXPECT_EQ((*got)->video_frames, 312);
  ASSERT_EQ((*got)->segments.size(), 3u);
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*got)->segments[i].index.v, i);
    EXPECT_DOUBLE_EQ((*got)->segments[i].duration, 4 + i * 0.25);
    EXPECT_EQ((*got)->segments[i].size, 1000u + i);
    EXPECT_EQ((*got)->segments[i].sha256, sha256(fmt::format("segment {}", i)));
  }
  auto all = cat_->list();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ(all->front().segment_count, 3u);
  // A program that does not exist cannot be packaged.
  auto other = film("other");
  EXPECT_EQ(cat_->set_packaged(other).err().code, errc::not_found);
}

TEST_P(Catalog, RenditionsAndDroppedTracksAreKeptAndGoWithAFailedRecord) {
  auto p = film();
  ASSERT_TRUE(cat_->create(p, "here"));
  api::rendition hi{"360p", api::rendition_kind::video, 900'000, 700'000, "avc1.64001e", 640, 360,
                    25};
  api::rendition fra{"audio-fra", api::rendition_kind::audio, 128'000, 120'000, "mp4a.40.2"};
  fra.language = "fr";
  fra.title = "Français";
  fra.is_default = true;
  p.renditions = {hi, fra};
  p.dropped = {"audio track 3 (dts): no decoder"};
  ASSERT_TRUE(cat_->set_packaged(p));
  auto got = cat_->get(p.id);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->renditions, p.renditions);
  EXPECT_EQ((*got)->dropped, p.dropped);
  auto all = cat_->list();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ(all->front().renditions, p.renditions);
  // A program without renditions lists none.
  ASSERT_TRUE(cat_->create(film("plain"), "here"));
  auto plain = cat_->get(*program_id::parse("plain"));
  ASSERT_TRUE(plain && *plain);
  EXPECT_TRUE((*plain)->renditions.empty());
  EXPECT_TRUE((*plain)->dropped.empty());
  // Ingested again after a failure, the program starts without the old list.
  ASSERT_TRUE(cat_->change_state(p.id, program_state::failed, t0, "broken"));
  ASSERT_TRUE(cat_->create(film(), "here"));
  auto again = cat_->get(p.id);
  ASSERT_TRUE(again && *again);
  EXPECT_TRUE((*again)->renditions.empty());
  EXPECT_TRUE((*again)->dropped.empty());
}

TEST_P(Catalog, TheLifecycleAllowsOnlyItsTransitionsAndRecordsEach) {
  auto id = *program_id::parse("film");
  ASSERT_TRUE(cat_->create(film(), "here"));
  // Not straight to published: it must be in place first.
  auto early = cat_->change_state(id, program_state::published, t0 + 1min);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.err().code, errc::conflict);
  EXPECT_NE(early.err().detail.find("ingesting"), std::string::npos);
  ASSERT_TRUE(cat_->change_state(id, program_state::inactive, t0 + 2min, "publishes at ..."));
  ASSERT_TRUE(cat_->change_state(id, program_state::published, t0 + 1h));
  EXPECT_FALSE(cat_->change_state(id, program_state::inactive, t0 + 2h));
  EXPECT_FALSE(cat_->change_state(id, program_state::failed, t0 + 2h));
  ASSERT_TRUE(cat_->change_state(id, program_state::withdrawn, t0 + 3h, "by the operator"));
  // A publish timer (only from inactive) does not bring a withdrawn program back; an operator does.
  auto timer = cat_->change_state(id, program_state::published, t0 + 4h, "at its publish time",
                                  program_state::inactive);
  ASSERT_FALSE(timer);
  EXPECT_EQ(timer.err().code, errc::conflict);
  EXPECT_NE(timer.err().detail.find("withdrawn"), std::string::npos) << timer.err().detail;
  ASSERT_TRUE(cat_->change_state(id, program_state::published, t0 + 4h));
  auto h = cat_->history(id);
  ASSERT_TRUE(h);
  std::vector<program_state> states;
  for (auto& c : *h) {
    states.push_back(c.state);
  }
  EXPECT_EQ(states, (std::vector<program_state>{program_state::ingesting, program_state::inactive,
                                                program_state::published, program_state::withdrawn,
                                                program_state::published}));
  EXPECT_EQ((*h)[3].at, t0 + 3h);
  EXPECT_EQ((*h)[3].detail, "by the operator");
  auto got = cat_->get(id);
  EXPECT_EQ((*got)->state, program_state::published);
  EXPECT_EQ((*got)->updated_at, t0 + 4h);
  EXPECT_EQ(
      cat_->change_state(*program_id::parse("nosuch"), program_state::inactive, t0).err().code,
      errc::not_found);
}

TEST_P(Catalog, ADuplicateIdIsRefusedUnlessTheFirstFailed) {
  auto id = *program_id::parse("film");
  ASSERT_TRUE(cat_->create(film(), "here"));
  auto dup = cat_->create(film(), "here");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.err().code, errc::conflict);
  EXPECT_NE(dup.err().detail.find("already exists"), std::string::npos);
  ASSERT_TRUE(cat_->change_state(id, program_state::failed, t0 + 1min, "not a media file"));
  EXPECT_EQ((*cat_->get(id))->error, "not a media file");
  // A failed program's id can be ingested again; its history goes on.
  auto again = film();
  again.source = "/srv/film-fixed.mp4";
  ASSERT_TRUE(cat_->create(again, "here"));
  auto got = cat_->get(id);
  EXPECT_EQ((*got)->state, program_state::ingesting);
  EXPECT_EQ((*got)->source, "/srv/film-fixed.mp4");
  EXPECT_EQ((*got)->error, "");
  EXPECT_EQ(cat_->history(id)->size(), 3u);
}

TEST(CatalogStates, NamesRoundTripAndUnknownOnesAreRefused) {
  for (auto s : {program_state::ingesting, program_state::inactive, program_state::published,
                 program_state::withdrawn, program_state::failed}) {
    EXPECT_EQ(parse_state(to_string(s)), s);
  }
  EXPECT_FALSE(parse_state("live"));
  EXPECT_FALSE(parse_state(""));
}

INSTANTIATE_TEST_SUITE_P(Backends, Catalog, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace vodgrid::content
