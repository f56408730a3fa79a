// RTSP inside TLS (issue 17, item 1): a director serving HTTPS takes RTSP on the same port inside
// TLS (rtsps://), and the stream goes inside that connection (interleaved RTP), never in the clear.
// A station of real processes on HTTPS with certificates of a local CA (as `vodgrid up --tls`
// makes them) and two engines holding alternate segments: ffmpeg reads exactly the source's
// packets across the engines' hand-offs; GStreamer's rtspsrc plays rtsps://; openssl s_client,
// verifying the director against the CA, speaks RTSP inside TLS: a UDP SETUP gets 461; plain RTSP
// on the TLS port and garbage inside TLS are refused while the director goes on. These play in
// real time (RESOURCE_LOCK realtime).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "base/fs.h"
#include "base/process.h"
#include "cli/local_tls.h"
#include "net/tls.h"
#include "support/support.h"

namespace vodgrid::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Director `st` and engines e0, e1 on HTTPS; copies = 1: segment i on one engine, the next on the
// other, so a stream is handed from engine to engine at the boundaries.
class rtsps_station {
 public:
  rtsps_station() {
    station_config s;
    s.name = *station_id::parse("st");
    s.director.listen = {"127.0.0.1", free_port()};
    s.director.data_dir = dir_.path() / "st";
    s.director.copies = 1;
    for (int i = 0; i < 2; ++i) {
      engine_config e;
      e.name = *engine_id::parse(fmt::format("e{}", i));
      e.listen = {"127.0.0.1", free_port()};
      e.data_dirs = {dir_.path() / e.name.str() / "d0"};
      s.engines.push_back(e);
    }
    grid_.stations.push_back(s);
    grid_.heartbeat_interval = 100ms;
    grid_.heartbeat_timeout = 1000ms;
    if (auto st = cli::make_local_tls(grid_, dir_.path() / "tls"); !st) {
      throw std::runtime_error("certificates: " + st.err().detail);
    }
    if (!write_file_durably(config_, grid_.to_toml())) {
      throw std::runtime_error("cannot write the config");
    }
    net::set_default_tls_ca(ca());  // this process's metric reads go over HTTPS
    procs_.push_back(spawn("director", "st"));
    procs_.push_back(spawn("engine", "e0"));
    procs_.push_back(spawn("engine", "e1"));
    if (!eventually([&] { return metric(director_url(), "vodgrid_director_engines_up") == 2; },
                    20s)) {
      throw std::runtime_error("the station did not come up:\n" + log_of("st"));
    }
  }
  ~rtsps_station() {
    for (auto it = procs_.rbegin(); it != procs_.rend(); ++it) {
      it->stop(5s);
    }
    print_logs_if_failed(dir_.path());
  }
  std::string director_url() const { return grid_.stations[0].director.listen.url(); }
  uint16_t port() const { return grid_.stations[0].director.listen.port; }
  std::string rtsps_url(const std::string& id) const {
    return fmt::format("rtsps://127.0.0.1:{}/v1/programs/{}", port(), id);
  }
  fs::path ca() const { return grid_.tls.ca; }
  std::string log_of(const std::string& name) const {
    auto t = read_file(dir_.path() / (name + ".log"));
    return t ? *t : std::string();
  }
  run_result ingest(const std::string& source, const std::string& id) {
    return run({"/usr/bin/env", "SSL_CERT_FILE=" + ca().string(), vodgrid_binary(), "ingest",
                source, "--title", "Test " + id, "--id", id, "--grid", director_url()});
  }
  // `requests` sent inside TLS (openssl s_client verifying the director against the CA), then
  // what the director answered within `wait`.
  std::string tls_exchange(const std::string& requests, std::chrono::seconds wait = 2s) const {
    auto r =
        run({"/bin/bash", "-c",
             fmt::format("(printf '%s' \"$1\"; sleep {}) | openssl s_client -quiet -no_ign_eof "
                         "-verify_return_error -CAfile '{}' -connect 127.0.0.1:{} 2>/dev/null",
                         wait.count(), ca().string(), port()),
             "-", requests},
            20s);
    return r.out;
  }

 private:
  child_process spawn(const std::string& role, const std::string& name) {
    auto p =
        child_process::spawn({vodgrid_binary(), role, "--config", config_.string(), "--name", name},
                             dir_.path() / (name + ".log"));
    if (!p) {
      throw std::runtime_error(p.err().detail);
    }
    return std::move(*p);
  }

  temp_dir dir_;
  fs::path config_ = dir_.path() / "grid.toml";
  grid_config grid_;
  std::vector<child_process> procs_;
};

std::vector<std::string> of_stream(const std::vector<std::string>& all, const std::string& prefix) {
  std::vector<std::string> out;
  std::copy_if(all.begin(), all.end(), std::back_inserter(out),
               [&](const std::string& s) { return s.starts_with(prefix); });
  return out;
}

TEST(Rtsps, FfmpegReadsExactlyTheSourcePacketsInsideTlsAcrossHandOffs) {
  rtsps_station st;
  temp_dir src;
  auto playlist = make_sample(src.path(), 8, 1);
  auto in = st.ingest(src.path().string(), "movie");
  ASSERT_EQ(in.status, 0) << in.err << st.log_of("st");
  // ffmpeg 5.1's RTSP demuxer takes no -ca_file/-tls_verify (its TLS connection gets no options):
  // it does not verify the director; tls_exchange's openssl s_client does, in the other test.
  auto via_rtsps = ffmpeg_packets({"-rtsp_transport", "tcp", "-i", st.rtsps_url("movie")});
  auto from_source = ffmpeg_packets({"-i", playlist.string()});
  ASSERT_GT(from_source.size(), 100u);
  // As over UDP (tests/rtsp_test.cc): ffmpeg's RTP MPEG-TS demuxer keeps the last video frame.
  auto video = of_stream(from_source, "0,");
  ASSERT_GT(video.size(), 50u);
  video.pop_back();
  EXPECT_EQ(of_stream(via_rtsps, "0,"), video);
  EXPECT_EQ(of_stream(via_rtsps, "1,"), of_stream(from_source, "1,"));
  EXPECT_EQ(via_rtsps.size(), from_source.size() - 1);
  EXPECT_GE(metric(st.director_url(), "vodgrid_director_push_handoffs_total"), 2);
  EXPECT_GE(metric(st.director_url(), "vodgrid_director_push_plays_total"), 1);
  // The connection closed, its session ended.
  EXPECT_TRUE(
      eventually([&] { return metric(st.director_url(), "vodgrid_director_rtsp_sessions") == 0; }));
}

// GStreamer's rtspsrc asks for TCP interleaving on its own for rtsps://. gst-launch cannot give it
// the test's CA (tls-database is an object, and GIO's GnuTLS store is the system's): it refuses the
// director with the default validation, and plays to the end with validation off, every byte of
// the source's MPEG-TS in order across the engines' hand-offs.
// The play is judged by its bytes and its end (gst_play_rtsp says why).
TEST(Rtsps, GstreamerPlaysRtspsToTheEndAndRefusesAnUntrustedDirector) {
  rtsps_station st;
  temp_dir src;
  auto playlist = make_sample(src.path(), 5, 1);
  ASSERT_EQ(st.ingest(src.path().string(), "movie").status, 0) << st.log_of("st");
  auto untrusted = gst_play_rtsp(st.rtsps_url("movie"), {}, src.path());
  EXPECT_NE(untrusted.run.status, 0) << untrusted.run.out << untrusted.run.err;
  EXPECT_FALSE(untrusted.ended);
  EXPECT_EQ(metric(st.director_url(), "vodgrid_director_push_plays_total"), 0);
  auto r = gst_play_rtsp(st.rtsps_url("movie"), {"tls-validation-flags=0"}, src.path());
  EXPECT_TRUE(played_whole(r, playlist));
  EXPECT_GE(metric(st.director_url(), "vodgrid_director_push_handoffs_total"), 2);
  EXPECT_NE(st.log_of("st").find("inside its TLS connection"), std::string::npos);
}

TEST(Rtsps, UdpOverRtspsPlainRtspOnTheTlsPortAndGarbageAreRefused) {
  rtsps_station st;
  temp_dir src;
  make_sample(src.path(), 2, 1);
  ASSERT_EQ(st.ingest(src.path().string(), "movie").status, 0) << st.log_of("st");
  auto url = st.rtsps_url("movie");
  // Inside TLS the director speaks RTSP: DESCRIBE names rtsps:// for the track.
  auto describe = st.tls_exchange("DESCRIBE " + url + " RTSP/1.0\r\nCSeq: 1\r\n\r\n");
  EXPECT_EQ(rtsp_status(describe), 200) << describe;
  EXPECT_NE(describe.find("a=control:" + url + "/track1"), std::string::npos) << describe;
  // A SETUP for UDP: RTP would go in the clear. 461, with what to ask for instead.
  auto udp = st.tls_exchange("SETUP " + url +
                             "/track1 RTSP/1.0\r\nCSeq: 2\r\nTransport: "
                             "RTP/AVP;unicast;client_port=40000-40001\r\n\r\n");
  EXPECT_EQ(rtsp_status(udp), 461) << udp;
  EXPECT_NE(udp.find("RTP/AVP/TCP;interleaved"), std::string::npos) << udp;
  // Interleaved: a session whose Transport names the channels.
  auto tcp = st.tls_exchange("SETUP " + url +
                             "/track1 RTSP/1.0\r\nCSeq: 3\r\nTransport: "
                             "RTP/AVP/TCP;unicast;interleaved=4-5\r\n\r\n");
  EXPECT_EQ(rtsp_status(tcp), 200) << tcp;
  EXPECT_NE(tcp.find("Transport: RTP/AVP/TCP;unicast;interleaved=4-5;ssrc="), std::string::npos)
      << tcp;
  EXPECT_EQ(metric(st.director_url(), "vodgrid_director_push_plays_total"), 0);
  // That connection closed: its session is gone.
  EXPECT_TRUE(
      eventually([&] { return metric(st.director_url(), "vodgrid_director_rtsp_sessions") == 0; }));

  // Plain RTSP on the TLS port: no RTSP answer, the handshake refused and logged.
  auto plain = raw_exchange(st.port(), "OPTIONS rtsp://127.0.0.1/ RTSP/1.0\r\nCSeq: 1\r\n\r\n");
  EXPECT_EQ(plain.find("RTSP/1.0"), std::string::npos) << plain;
  EXPECT_TRUE(eventually([&] {
    return st.log_of("st").find("TLS handshake from 127.0.0.1 refused") != std::string::npos;
  }));
  // Garbage inside TLS: a malformed RTSP request gets 400, bytes of no protocol HTTP's 400.
  auto bad_rtsp = st.tls_exchange("DESCRIBE \x01\x02 RTSP/1.0\r\nCSeq: x\r\n\r\n");
  EXPECT_EQ(rtsp_status(bad_rtsp), 400) << bad_rtsp;
  auto junk = st.tls_exchange("\x16\x03junk\r\n\r\n");
  EXPECT_EQ(status_of(junk), 400) << junk;
  // The director goes on: HTTPS and RTSPS still answer.
  auto health = http_get(st.director_url() + "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto options = st.tls_exchange("OPTIONS " + url + " RTSP/1.0\r\nCSeq: 9\r\n\r\n");
  EXPECT_EQ(rtsp_status(options), 200) << options;
  // The console does not play rtsps:// yet: one line saying what to use.
  auto play = run({vodgrid_binary(), "play", url});
  EXPECT_NE(play.status, 0);
  EXPECT_EQ(play.err,
            "vodgrid play: rtsps:// is not played by the console yet: use the https:// playlist of "
            "the program, or ffmpeg/ffplay for rtsps://\n");
}

}  // namespace
}  // namespace vodgrid::test
