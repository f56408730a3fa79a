// Unit tests of the packager's output side and FFmpeg glue: the playlist text, the size limits of
// the muxer's sink, and the Annex B parameter-set check.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "content/ffmpeg.h"
#include "content/segment_writer.h"

namespace vodgrid::content {
namespace {

packaged_segment seg(uint32_t i, double duration) {
  return packaged_segment{i, duration, 100, {}, fmt::format("seg{:05d}.ts", i)};
}

TEST(VodPlaylistText, TargetIsTheLongestSegmentRoundedUp) {
  EXPECT_EQ(vod_playlist_text({seg(0, 4.0), seg(1, 5.5), seg(2, 2.0)}),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n"
            "#EXT-X-PLAYLIST-TYPE:VOD\n"
            "#EXTINF:4.000000,\nseg00000.ts\n"
            "#EXTINF:5.500000,\nseg00001.ts\n"
            "#EXTINF:2.000000,\nseg00002.ts\n"
            "#EXT-X-ENDLIST\n");
}

TEST(VodPlaylistText, AWholeSecondIsNotRoundedUpAndTheTargetIsAtLeastOne) {
  EXPECT_NE(vod_playlist_text({seg(0, 4.0000000001)}).find("TARGETDURATION:4\n"),
            std::string::npos);
  EXPECT_NE(vod_playlist_text({seg(0, 0.2)}).find("TARGETDURATION:1\n"), std::string::npos);
}

class SegmentSink : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() /
          fmt::format("vodgrid-sink-{}-{}", ::getpid(),
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    sink.max_segment = 10;
    sink.max_total = 15;
    sink.current = std::make_unique<segment_writer>(dir, 0, false);
    ASSERT_TRUE(sink.current->open());
  }
  void TearDown() override {
    sink.current.reset();
    std::filesystem::remove_all(dir);
  }
  std::filesystem::path dir;
  segment_sink sink;
  const uint8_t bytes[16] = {};
};

TEST_F(SegmentSink, TakesBytesWithinTheLimits) {
  EXPECT_EQ(sink.write(bytes, 10), 10);
  EXPECT_FALSE(sink.failure);
  auto done = sink.current->commit(1.0);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->size, 10u);
  EXPECT_TRUE(std::filesystem::exists(dir / "seg00000.ts"));
}

TEST_F(SegmentSink, ASegmentPastMaxSegmentBytesFailsTooLargeAndStaysFailed) {
  EXPECT_LT(sink.write(bytes, 11), 0);
  ASSERT_TRUE(sink.failure);
  EXPECT_EQ(sink.failure->code, errc::too_large);
  EXPECT_LT(sink.write(bytes, 1), 0);  // the first failure is kept
}

TEST_F(SegmentSink, TheProgramPastMaxBytesFailsTooLarge) {
  sink.committed_bytes = 10;
  EXPECT_LT(sink.write(bytes, 6), 0);
  ASSERT_TRUE(sink.failure);
  EXPECT_NE(sink.failure->detail.find("max_bytes"), std::string::npos);
}

TEST_F(SegmentSink, AWriteBetweenSegmentsIsAnInternalError) {
  sink.current.reset();
  EXPECT_LT(sink.write(bytes, 1), 0);
  ASSERT_TRUE(sink.failure);
  EXPECT_EQ(sink.failure->code, errc::internal);
}

TEST(AnnexB, FindsTheSequenceParameterSetOfEachCodec) {
  const uint8_t h264_sps[] = {0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce};
  const uint8_t h264_pps_idr[] = {0, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88};
  EXPECT_TRUE(has_sps(h264_sps, sizeof h264_sps, AV_CODEC_ID_H264));
  EXPECT_FALSE(has_sps(h264_pps_idr, sizeof h264_pps_idr, AV_CODEC_ID_H264));
  const uint8_t hevc_vps_sps[] = {0, 0, 1, 0x40, 0x01, 0, 0, 1, 0x42, 0x01, 0x01};
  const uint8_t hevc_vps[] = {0, 0, 1, 0x40, 0x01, 0x0c};
  EXPECT_TRUE(has_sps(hevc_vps_sps, sizeof hevc_vps_sps, AV_CODEC_ID_HEVC));
  EXPECT_FALSE(has_sps(hevc_vps, sizeof hevc_vps, AV_CODEC_ID_HEVC));
  EXPECT_FALSE(has_sps(h264_sps, sizeof h264_sps, AV_CODEC_ID_HEVC));  // 0x67 is not type 33
}

TEST(AnnexB, RecognisesBothStartCodes) {
  const uint8_t three[] = {0, 0, 1, 0x67};
  const uint8_t four[] = {0, 0, 0, 1, 0x67};
  const uint8_t avcc[] = {1, 0x42, 0, 0x1e};
  EXPECT_TRUE(starts_with_start_code(three, sizeof three));
  EXPECT_TRUE(starts_with_start_code(four, sizeof four));
  EXPECT_FALSE(starts_with_start_code(avcc, sizeof avcc));
  EXPECT_FALSE(starts_with_start_code(three, 2));
}

}  // namespace
}  // namespace vodgrid::content
