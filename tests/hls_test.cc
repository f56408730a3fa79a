// Unit tests of the HLS playlist readers and writers: media and multivariant.
#include <gtest/gtest.h>

#include <cmath>

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

TEST(Hls, WritesWebVttSegmentUrisForSubtitlesAndNoIFramePlaylist) {
  program_manifest m;
  m.id = *program_id::parse("film--subs-eng");
  m.format = segment_format::webvtt;
  m.segments.push_back({segment_index{0}, 2.0, 80, {}});
  m.segments.push_back({segment_index{1}, 1.5, 120, {}});
  auto pl = parse_media_playlist(write_vod_playlist(m, "?token=abc"));
  ASSERT_TRUE(pl) << pl.err().detail;
  ASSERT_EQ(pl->segments.size(), 2u);
  EXPECT_EQ(pl->segments[0].uri, "segments/0.vtt?token=abc");
  EXPECT_EQ(pl->segments[1].uri, "segments/1.vtt?token=abc");
  auto iframes = write_iframe_playlist(m, "");
  ASSERT_FALSE(iframes);
  EXPECT_EQ(iframes.err().code, errc::not_found);
  EXPECT_NE(iframes.err().detail.find("subtitles"), std::string::npos) << iframes.err().detail;
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

program_manifest film() {
  program_manifest m;
  m.id = *program_id::parse("film");
  m.renditions.push_back(
      {"360p", rendition_kind::video, 900'000, 700'000, "avc1.64001e", 640, 360, 25});
  m.renditions.push_back(
      {"180p", rendition_kind::video, 300'000, 250'000, "avc1.64000d", 320, 180, 29.97});
  return m;
}

TEST(Hls, MultivariantPlaylistListsEachVideoRenditionRelativeWithTheQuery) {
  std::string text = write_multivariant_playlist(film(), "?token=abc.def");
  EXPECT_EQ(text,
            "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-INDEPENDENT-SEGMENTS\n"
            "#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=700000,CODECS=\"avc1.64001e\","
            "RESOLUTION=640x360,FRAME-RATE=25.000\n"
            "../film--360p/index.m3u8?token=abc.def\n"
            "#EXT-X-STREAM-INF:BANDWIDTH=300000,AVERAGE-BANDWIDTH=250000,CODECS=\"avc1.64000d\","
            "RESOLUTION=320x180,FRAME-RATE=29.970\n"
            "../film--180p/index.m3u8?token=abc.def\n");
  // What we write, we read: the same variants come back.
  auto pl = parse_multivariant_playlist(text);
  ASSERT_TRUE(pl) << pl.err().detail;
  ASSERT_EQ(pl->variants.size(), 2u);
  EXPECT_EQ(pl->variants[1].uri, "../film--180p/index.m3u8?token=abc.def");
  EXPECT_EQ(pl->variants[1].width, 320);
  EXPECT_EQ(pl->variants[1].average_bandwidth, 250'000u);
  EXPECT_NEAR(pl->variants[1].frame_rate, 29.97, 1e-9);
  // The media playlist reader refuses it, pointing at one of its variants.
  EXPECT_FALSE(parse_media_playlist(text));
  EXPECT_TRUE(is_multivariant(text));
  // Its I-frame playlists are its renditions'.
  auto iframes = write_iframe_playlist(film(), "");
  ASSERT_FALSE(iframes);
  EXPECT_EQ(iframes.err().code, errc::not_found);
  EXPECT_NE(iframes.err().detail.find("film--360p/iframes.m3u8"), std::string::npos);
}

TEST(Hls, MultivariantPlaylistGroupsAudioAndSubtitles) {
  auto m = film();
  rendition eng{"audio-eng", rendition_kind::audio, 128'000, 100'000, "mp4a.40.2"};
  eng.language = "en";
  eng.title = "English";
  rendition fra = eng;
  fra.name = "audio-fra";
  fra.language = "fr";
  fra.title = "Français";
  fra.is_default = true;
  rendition subs{"subs-eng", rendition_kind::subtitles, 1000, 500};
  subs.language = "en";
  m.renditions.insert(m.renditions.end(), {eng, fra, subs});
  std::string text = write_multivariant_playlist(m, "?token=\"x");  // an unsafe query is dropped
  EXPECT_NE(text.find("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",LANGUAGE=\"en\",NAME=\"English\","
                      "DEFAULT=NO,AUTOSELECT=YES,URI=\"../film--audio-eng/index.m3u8\"\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("LANGUAGE=\"fr\",NAME=\"Français\",DEFAULT=YES,"), std::string::npos);
  EXPECT_NE(
      text.find("#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",LANGUAGE=\"en\",NAME=\"subs-eng\","
                "DEFAULT=NO,AUTOSELECT=YES,URI=\"../film--subs-eng/index.m3u8\"\n"),
      std::string::npos);
  // Each variant plays with the default audio: its bandwidth and codec count in the variant's.
  EXPECT_NE(text.find("#EXT-X-STREAM-INF:BANDWIDTH=1028000,AVERAGE-BANDWIDTH=800000,"
                      "CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=25.000,"
                      "AUDIO=\"audio\",SUBTITLES=\"subs\"\n../film--360p/index.m3u8\n"),
            std::string::npos)
      << text;
  auto pl = parse_multivariant_playlist(text);
  ASSERT_TRUE(pl) << pl.err().detail;
  ASSERT_EQ(pl->media.size(), 3u);
  EXPECT_EQ(pl->media[1].type, "AUDIO");
  EXPECT_EQ(pl->media[1].language, "fr");
  EXPECT_TRUE(pl->media[1].is_default);
  EXPECT_EQ(pl->media[2].uri, "../film--subs-eng/index.m3u8");
  EXPECT_EQ(pl->variants[0].audio, "audio");
}

TEST(Hls, IFrameRatesArePeakAndAverageOfTheKeyFrames) {
  program_manifest m;
  m.id = *program_id::parse("film--360p");
  // Key frames at 0 s (9000 bytes, lasting 1 s), 1 s (8000, 1 s) and 2 s (7000, 1.5 s).
  m.segments.push_back(
      {segment_index{0}, 2.0, 100000, {}, 376, {{376, 9000, 0}, {50000, 8000, 1}}});
  m.segments.push_back({segment_index{1}, 1.5, 90000, {}, 376, {{376, 7000, 0}}});
  auto r = iframe_rates_of(m);
  EXPECT_EQ(r.bandwidth, 72'000u);  // 9000 bytes in 1 s
  EXPECT_EQ(r.average_bandwidth, static_cast<uint64_t>(std::ceil(24'000 * 8 / 3.5)));
  m.segments[1].key_frames.clear();  // no index, no I-frame playlist, no rates
  EXPECT_EQ(iframe_rates_of(m).bandwidth, 0u);
}

TEST(Hls, MultivariantPlaylistListsEachVideoRenditionsIFramePlaylist) {
  auto m = film();
  m.renditions[0].codecs = "avc1.64001e,mp4a.40.2";
  m.renditions[0].iframe_bandwidth = 72'000;
  m.renditions[0].iframe_average_bandwidth = 54'858;
  m.renditions[1].iframe_bandwidth = 30'000;  // no average known
  rendition audio{"audio-eng", rendition_kind::audio, 128'000, 100'000, "mp4a.40.2"};
  m.renditions.push_back(audio);
  std::string text = write_multivariant_playlist(m, "?token=abc");
  EXPECT_NE(text.find("#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=72000,AVERAGE-BANDWIDTH=54858,"
                      "CODECS=\"avc1.64001e\",RESOLUTION=640x360,"
                      "URI=\"../film--360p/iframes.m3u8?token=abc\"\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=30000,CODECS=\"avc1.64000d\","
                      "RESOLUTION=320x180,URI=\"../film--180p/iframes.m3u8?token=abc\"\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("audio-eng/iframes"), std::string::npos) << text;
  // Readers of the variants are not misled by the I-frame lines.
  auto pl = parse_multivariant_playlist(text);
  ASSERT_TRUE(pl) << pl.err().detail;
  EXPECT_EQ(pl->variants.size(), 2u);
  // A rendition without a key frame index has no line.
  m.renditions[1].iframe_bandwidth = 0;
  EXPECT_EQ(write_multivariant_playlist(m, "").find("film--180p/iframes"), std::string::npos);
}

TEST(Hls, MultivariantReaderRefusesWhatItCannotReadWithTheLine) {
  auto err = [](std::string text) {
    auto r = parse_multivariant_playlist(text);
    EXPECT_FALSE(r) << text;
    return r ? std::string() : r.err().detail;
  };
  EXPECT_NE(err("").find("empty"), std::string::npos);
  EXPECT_NE(err("#EXTM3U\n#EXT-X-STREAM-INF:CODECS=\"a\"\nv.m3u8\n")
                .find("line 2: #EXT-X-STREAM-INF without a valid BANDWIDTH"),
            std::string::npos);
  EXPECT_NE(err("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"a\nv.m3u8\n").find("unterminated"),
            std::string::npos);
  EXPECT_NE(
      err("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640\nv.m3u8\n").find("RESOLUTION"),
      std::string::npos);
  EXPECT_NE(err("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n").find("without its URI"),
            std::string::npos);
  EXPECT_NE(err("#EXTM3U\nv.m3u8\n").find("line 2: a URI without #EXT-X-STREAM-INF"),
            std::string::npos);
  EXPECT_NE(err("#EXTM3U\n#EXTINF:1,\na.ts\n").find("a media playlist"), std::string::npos);
  std::string many = "#EXTM3U\n";
  for (int i = 0; i < 40; ++i) {
    many += "#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n";
  }
  EXPECT_NE(err(many).find("more than 32 renditions"), std::string::npos);
}

}  // namespace vodgrid::api
