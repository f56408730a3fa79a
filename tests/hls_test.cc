// Unit tests of the HLS media playlist reader and writer.
#include <gtest/gtest.h>

#include "api/hls.h"

namespace vodgrid::api {
namespace {

TEST(Hls, ParsesAVodPlaylist) {
  auto pl = parse_media_playlist(
      "#EXTM3U\r\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
      "#EXTINF:2.000000,\nseg000.ts\n#EXTINF:1.5,title\nhttp://x/seg001.ts\n#EXT-X-ENDLIST\n");
  ASSERT_TRUE(pl) << pl.err().detail;
  EXPECT_TRUE(pl->endlist);
  ASSERT_EQ(pl->segments.size(), 2u);
  EXPECT_DOUBLE_EQ(pl->segments[0].duration, 2.0);
  EXPECT_EQ(pl->segments[0].uri, "seg000.ts");
  EXPECT_DOUBLE_EQ(pl->segments[1].duration, 1.5);
  EXPECT_EQ(pl->segments[1].uri, "http://x/seg001.ts");
}

TEST(Hls, RefusesWhatItCannotServeWithTheLine) {
  auto err = [](std::string text) {
    auto r = parse_media_playlist(text);
    EXPECT_FALSE(r) << text;
    return r ? std::string() : r.err().detail;
  };
  EXPECT_NE(err("").find("empty"), std::string::npos);
  EXPECT_NE(err("hello\n").find("line 1"), std::string::npos);
  EXPECT_NE(err("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n").find("master"),
            std::string::npos);
  EXPECT_NE(
      err("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:1,\na.ts\n").find("encrypted"),
      std::string::npos);
  EXPECT_NE(err("#EXTM3U\n#EXT-X-MAP:URI=\"i.mp4\"\n#EXTINF:1,\na.m4s\n").find("fMP4"),
            std::string::npos);
  EXPECT_NE(err("#EXTM3U\n#EXTINF:-1,\na.ts\n").find("duration"), std::string::npos);
  EXPECT_NE(err("#EXTM3U\n#EXTINF:nan,\na.ts\n").find("duration"), std::string::npos);
  EXPECT_NE(err("#EXTM3U\na.ts\n").find("without #EXTINF"), std::string::npos);
  EXPECT_NE(err("#EXTM3U\n#EXTINF:1,\n").find("without its URI"), std::string::npos);
  EXPECT_NE(err("#EXTM3U\n#EXT-X-ENDLIST\n").find("no segments"), std::string::npos);
  EXPECT_NE(err(std::string("#EXTM3U\n#EXTINF:1,\na\0b.ts\n", 24)).find("NUL"), std::string::npos);
}

TEST(Hls, WritesAPlaylistThatReadsBack) {
  program_manifest m;
  m.id = *program_id::parse("p");
  for (uint32_t i = 0; i < 3; ++i) {
    m.segments.push_back({segment_index{i}, 1.96 + i, 1000, {}});
  }
  std::string text = write_vod_playlist(m, "?token=abc");
  EXPECT_NE(text.find("#EXT-X-TARGETDURATION:4\n"), std::string::npos);  // ceil(3.96)
  EXPECT_NE(text.find("#EXT-X-PLAYLIST-TYPE:VOD"), std::string::npos);
  auto pl = parse_media_playlist(text);
  ASSERT_TRUE(pl) << pl.err().detail;
  EXPECT_TRUE(pl->endlist);
  ASSERT_EQ(pl->segments.size(), 3u);
  EXPECT_EQ(pl->segments[2].uri, "segments/2.ts?token=abc");
  EXPECT_NEAR(pl->segments[1].duration, 2.96, 1e-6);
}

TEST(Hls, WritesAnIFramePlaylistOfByteRangesLastingToTheNextKeyFrame) {
  program_manifest m;
  m.id = *program_id::parse("film");
  m.segments.push_back(
      {segment_index{0}, 2.0, 100000, {}, 376, {{376, 9000, 0}, {50000, 8000, 1}}});
  m.segments.push_back({segment_index{1}, 1.5, 90000, {}, 376, {{376, 7000, 0}}});
  auto text = write_iframe_playlist(m, "?token=a\"b");
  ASSERT_TRUE(text) << text.err().detail;
  EXPECT_EQ(*text,
            "#EXTM3U\n#EXT-X-VERSION:5\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:2\n"
            "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-I-FRAMES-ONLY\n"
            "#EXT-X-MAP:URI=\"segments/0.ts?token=a%22b\",BYTERANGE=\"376@0\"\n"
            "#EXTINF:1.000000,\n#EXT-X-BYTERANGE:9000@376\nsegments/0.ts?token=a\"b\n"
            "#EXTINF:1.000000,\n#EXT-X-BYTERANGE:8000@50000\nsegments/0.ts?token=a\"b\n"
            "#EXT-X-MAP:URI=\"segments/1.ts?token=a%22b\",BYTERANGE=\"376@0\"\n"
            "#EXTINF:1.500000,\n#EXT-X-BYTERANGE:7000@376\nsegments/1.ts?token=a\"b\n"
            "#EXT-X-ENDLIST\n");
  // A segment without its index: no I-frame playlist, and why.
  m.segments[1].key_frames.clear();
  auto none = write_iframe_playlist(m, "");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.err().code, errc::not_found);
  EXPECT_NE(none.err().detail.find("segment 1"), std::string::npos) << none.err().detail;
}

}  // namespace
}  // namespace vodgrid::api
