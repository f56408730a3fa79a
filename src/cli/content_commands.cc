// The operator's commands that go through the content manager: ingest (of any provider source),
// programs, publish, withdraw.
#include <fmt/format.h>
#include <unistd.h>
#include <boost/json/serialize.hpp>

#include <filesystem>
#include <iostream>
#include <thread>

#include "api/api.h"
#include "base/time.h"
#include "cli/commands.h"
#include "cli/commands_impl.h"
#include "cli/remote.h"
#include "content/fetch.h"
#include "content/renditions.h"

namespace vodgrid::cli {

namespace json = boost::json;

namespace {

std::string str(const json::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

double num(const json::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  if (v && v->is_array()) {
    return static_cast<double>(v->as_array().size());  // a list: its length
  }
  return v && v->is_number() ? v->to_number<double>() : 0;
}

// One progress report: a bar on a terminal, a line per phase change (and every tenth) otherwise.
class progress_printer {
 public:
  explicit progress_printer(bool quiet) : quiet_(quiet), tty_(::isatty(2)) {}
  void show(const json::object& progress) {
    if (quiet_) {
      return;
    }
    auto phase = str(progress, "phase");
    double done = num(progress, "done"), total = num(progress, "total");
    auto unit = str(progress, "unit");
    auto amount = [&](double v) {
      return unit == "bytes"     ? fmt::format("{:.1f} MB", v / 1e6)
             : unit == "seconds" ? fmt::format("{:.1f} s", v)
                                 : fmt::format("{:.0f}", v);
    };
    std::string text = total > 0 ? fmt::format("{} {}/{}", phase, amount(done), amount(total))
                                 : fmt::format("{} {}", phase, amount(done));
    if (tty_) {
      int width = 30;
      int filled = total > 0 ? static_cast<int>(width * std::min(1.0, done / total)) : 0;
      std::cerr << fmt::format("\r[{}{}] {:<40}", std::string(filled, '#'),
                               std::string(width - filled, ' '), text)
                << std::flush;
      shown_ = true;
      return;
    }
    int tenth = total > 0 ? static_cast<int>(10 * done / total) : 0;
    if (phase != phase_ || tenth != tenth_) {
      std::cerr << text << "\n";
      phase_ = phase;
      tenth_ = tenth;
    }
  }
  void end() {
    if (shown_) {
      std::cerr << "\n";
      shown_ = false;
    }
  }

 private:
  bool quiet_, tty_;
  bool shown_ = false;
  std::string phase_;
  int tenth_ = -1;
};

// The body of POST /v1/programs from the command line's options, each checked here so that a bad
// one is refused before the content manager is asked. A local source becomes an absolute path.
result<api::ingest_request> ingest_request_of(const ingest_options& o) {
  if (o.title.empty()) {
    return make_error(errc::invalid_argument, "--title must not be empty");
  }
  api::ingest_request req;
  std::string name = o.id.empty() ? id_from_title(o.title) : o.id;
  auto id = program_id::parse(name);
  if (!id) {
    return make_error(
        errc::invalid_argument,
        fmt::format("program id '{}' must be 1-64 characters of [A-Za-z0-9_-]", name));
  }
  if (!content::valid_ladder_program(id->str())) {
    return make_error(errc::invalid_argument,
                      fmt::format("program id '{}' must be at most 46 characters and hold no "
                                  "\"--\" (reserved for renditions)",
                                  name));
  }
  req.id = *id;
  req.title = o.title;
  req.source = o.source;
  if (!content::is_url(req.source)) {
    // The content manager reads local sources itself: it needs the absolute path.
    std::error_code ec;
    req.source = std::filesystem::absolute(req.source, ec).lexically_normal().string();
    if (!std::filesystem::exists(req.source, ec)) {
      return make_error(errc::invalid_argument, "no such file: " + o.source);
    }
  }
  if (!o.publish_at.empty() && o.publish_at != "now") {
    auto at = parse_rfc3339(o.publish_at);
    if (!at) {
      return make_error(errc::invalid_argument, "--publish-at: " + at.err().detail);
    }
    req.publish_at = *at;
  }
  for (size_t i = 0; i < o.stations.size();) {
    size_t j = std::min(o.stations.find(',', i), o.stations.size());
    if (j > i) {
      auto station = station_id::parse(o.stations.substr(i, j - i));
      if (!station) {
        return make_error(
            errc::invalid_argument,
            fmt::format("--stations: '{}' is not a station name", o.stations.substr(i, j - i)));
      }
      req.stations.push_back(*station);
    }
    i = j + 1;
  }
  req.prefetch = o.prefetch;
  req.target_seconds = o.segment_seconds;
  // The command's default is the ladder (issue 13): the source's default rungs.
  req.renditions = o.remux ? std::string() : o.renditions.empty() ? "auto" : o.renditions;
  return req;
}

// The renditions of a program of several (flow 9), one line each, and the tracks not kept.
// What a program is made of, as `vodgrid ingest` and `vodgrid programs` say it: its segments, or
// for a multivariant program (whose own segment list is empty) how many renditions it has.
std::string parts_text(const json::object& p) {
  if (auto* rs = p.if_contains("renditions"); rs && rs->is_array() && !rs->as_array().empty()) {
    auto n = rs->as_array().size();
    return fmt::format("{} rendition{}", n, n == 1 ? "" : "s");
  }
  return fmt::format("{} segments", static_cast<uint64_t>(num(p, "segments")));
}

std::string renditions_text(const json::object& p) {
  std::string out;
  if (auto* rs = p.if_contains("renditions"); rs && rs->is_array()) {
    for (auto& r : rs->as_array()) {
      if (!r.is_object()) {
        continue;
      }
      auto& ro = r.as_object();
      std::string what = str(ro, "kind");
      if (what == "video") {
        what += fmt::format(" {}x{} {:.3g} fps", static_cast<int>(num(ro, "width")),
                            static_cast<int>(num(ro, "height")), num(ro, "frame_rate"));
      } else if (!str(ro, "language").empty()) {
        what += " " + str(ro, "language");
      }
      out += fmt::format("  rendition {:<28} {}  {} kb/s (average {})  {}\n", str(ro, "program"),
                         what, static_cast<uint64_t>(num(ro, "bandwidth") / 1000),
                         static_cast<uint64_t>(num(ro, "average_bandwidth") / 1000),
                         str(ro, "codecs"));
    }
  }
  if (auto* ds = p.if_contains("dropped"); ds && ds->is_array()) {
    for (auto& d : ds->as_array()) {
      out += fmt::format("  not kept: {}\n", d.is_string() ? std::string(d.as_string()) : "?");
    }
  }
  return out;
}

}  // namespace

result<json::object> content_ingest(const std::string& content, const ingest_options& o,
                                    bool quiet) {
  VODGRID_TRY(auto req, ingest_request_of(o));
  auto created = send_object("POST", content + "/v1/programs", json::serialize(api::to_json(req)),
                             token_from(o.token));
  if (!created) {
    return created.err();
  }
  progress_printer bar(quiet);
  std::string url = fmt::format("{}/v1/programs/{}", content, req.id.str());
  bool wait_publish = !req.publish_at;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::hours(24);
  int publish_polls = 0;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto p = fetch_object(url, token_from(o.token));
    if (!p) {
      bar.end();
      return p.err();
    }
    auto state = str(*p, "state");
    if (auto* pr = p->if_contains("progress"); pr && pr->is_object()) {
      bar.show(pr->as_object());
    }
    if (state == "failed") {
      bar.end();
      return make_error(errc::invalid_argument, str(*p, "error"));
    }
    // Published right after the ingest when its time is now: wait a moment for that too, so that
    // the viewer URL works when the command returns.
    if (state == "published" || state == "withdrawn" ||
        (state == "inactive" && (!wait_publish || ++publish_polls > 50))) {
      bar.end();
      return p;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      bar.end();
      return make_error(errc::timeout, "the ingest did not finish within a day");
    }
  }
}

int run_content_ingest(const std::string& content, const ingest_options& o) {
  auto p = content_ingest(content, o, false);
  if (!p) {
    return fail("ingest", p.err().detail);
  }
  std::string id = str(*p, "id");
  std::cout << fmt::format("program {} {}: {}, {:.1f} s, {} {}x{}{}", id, str(*p, "state"),
                           parts_text(*p), num(*p, "duration"), str(*p, "video_codec"),
                           static_cast<int>(num(*p, "width")), static_cast<int>(num(*p, "height")),
                           str(*p, "audio_codec").empty() ? "" : " + " + str(*p, "audio_codec"));
  if (str(*p, "state") == "inactive") {
    std::cout << fmt::format(", publishes at {}", str(*p, "publish_at"));
  }
  std::cout << "\n" << renditions_text(*p);
  if (auto g = fetch_object(grid_url(o.grid) + "/v1/grid", token_from(o.token));
      g && g->contains("stations")) {
    answer_reader answer(*g, "the registry's /v1/grid");
    std::string urls;
    for (auto& s : answer.array("stations")) {
      auto so = answer.element(s, "a station of the registry's /v1/grid");
      auto name = so.text("name");
      auto director = so.text("director_url");
      urls += fmt::format("viewer URL ({}): {}/v1/programs/{}/index.m3u8\n", name, director, id);
    }
    if (auto st = answer.error(); !st) {
      return fail("ingest", st.err().detail);
    }
    std::cout << urls;
  }
  return 0;
}

int run_content_programs(const std::string& content, const std::string& token) {
  auto o = fetch_object(content + "/v1/programs", token);
  if (!o) {
    return fail("programs", o.err().detail);
  }
  answer_reader answer(*o, "the content manager's /v1/programs");
  std::string out = fmt::format("{:<24} {:<10} {:>13} {:>9}  {:<24}  {}\n", "ID", "STATE",
                                "SEGMENTS", "SECONDS", "PUBLISH AT", "TITLE");
  for (auto& p : answer.array("programs")) {
    // What every program has is required; what only some have (an error, renditions) is not.
    auto program = answer.element(p, "a program of the content manager's /v1/programs");
    auto id = program.text("id");
    auto state = program.text("state");
    auto title = program.text("title");
    if (!p.is_object()) {
      break;
    }
    auto& po = p.as_object();
    auto parts = parts_text(po);
    out += fmt::format("{:<24} {:<10} {:>13} {:>9.1f}  {:<24}  {}{}\n", id, state,
                       parts.substr(0, parts.find(" segments")), num(po, "duration"),
                       str(po, "publish_at"), title,
                       str(po, "error").empty() ? "" : "  (" + str(po, "error") + ")");
    out += renditions_text(po);
  }
  if (auto st = answer.error(); !st) {
    return fail("programs", st.err().detail);
  }
  std::cout << out;
  return 0;
}

int run_lifecycle(const std::string& verb, const std::string& id, const std::string& grid,
                  const std::string& token) {
  auto c = content_url(grid_url(grid));
  if (!c) {
    return fail(verb, c.err().detail);
  }
  if (!*c) {
    return fail(verb, "this grid has no content manager");
  }
  auto p = send_object("POST", fmt::format("{}/v1/programs/{}/{}", **c, id, verb), "{}",
                       token_from(token));
  if (!p) {
    return fail(verb, p.err().detail);
  }
  std::cout << fmt::format("program {} {}\n", id, str(*p, "state"));
  if (auto* missing = p->if_contains("not_yet_told");
      missing && missing->is_array() && !missing->as_array().empty()) {
    std::string names;
    for (auto& m : missing->as_array()) {
      names += (names.empty() ? "" : ", ") + std::string(m.as_string());
    }
    std::cout << fmt::format("not yet acknowledged by {}: told again until they answer\n", names);
  }
  return 0;
}

}  // namespace vodgrid::cli
