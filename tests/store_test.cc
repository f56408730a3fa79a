// Unit tests of the segment store: durable puts, the index across reopen, data directories, fault
// injection (failed rename, crash before rename, no space), quarantine, concurrency.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "store/layout_impl.h"
#include "store/store.h"

namespace vodgrid::store {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;

segment_key key_of(std::string_view program, uint32_t index) {
  return segment_key{*program_id::parse(program), segment_index{index}};
}

std::string payload(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

template <class T>
asio::awaitable<void> store_into(asio::awaitable<T> op, std::optional<T>* out) {
  out->emplace(co_await std::move(op));
}

std::vector<fs::path> files_under(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::exists(dir)) {
    return out;
  }
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_directory()) {
      out.push_back(e.path());
    }
  }
  return out;
}

std::string read_all(int fd, uint64_t size) {
  std::string out(size, '\0');
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::pread(fd, out.data() + got, size - got, static_cast<off_t>(got));
    if (n <= 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

void write_raw(const fs::path& p, std::string_view data) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Delegates to the real file operations; each fault is switched on by a flag.
class fault_ops : public file_ops {
 public:
  std::atomic<bool> fail_rename{false};      // rename fails, the store cleans up
  std::atomic<bool> crash_at_rename{false};  // rename and everything after it fail: a dead process
  std::atomic<bool> no_space{false};         // writes half the data, then reports ENOSPC
  std::atomic<bool> fail_dir_fsync{false};
  std::atomic<int> writes{0};
  // The next write announces itself on `gate_entered`, then blocks until `gate_release` is set and
  // fails with no_space if `gate_fails`.
  std::atomic<bool> gate{false};
  std::atomic<bool> gate_fails{false};
  std::promise<void> gate_entered;
  std::promise<void> gate_release;

  status write_file(const fs::path& path, std::string_view data) override {
    if (dead_) {
      return dead();
    }
    writes += 1;
    if (gate.exchange(false)) {
      gate_entered.set_value();
      release_.wait();
      if (gate_fails) {
        return make_error(errc::no_space, "write " + path.string() + ": injected no space");
      }
    }
    if (no_space) {
      status st = real_->write_file(path, data.substr(0, data.size() / 2));
      if (!st) {
        return st;
      }
      return make_error(errc::no_space, "write " + path.string() + ": No space left on device");
    }
    return real_->write_file(path, data);
  }
  status fsync_file(const fs::path& path) override {
    return dead_ ? dead() : real_->fsync_file(path);
  }
  status rename(const fs::path& from, const fs::path& to) override {
    if (crash_at_rename) {
      dead_ = true;
    }
    if (dead_ || fail_rename) {
      return make_error(errc::io_error, "rename " + from.string() + ": injected fault");
    }
    return real_->rename(from, to);
  }
  status fsync_dir(const fs::path& dir) override {
    if (dead_ || fail_dir_fsync) {
      return make_error(errc::io_error, "fsync " + dir.string() + ": injected fault");
    }
    return real_->fsync_dir(dir);
  }
  status remove(const fs::path& path) override { return dead_ ? dead() : real_->remove(path); }

 private:
  static error dead() { return make_error(errc::io_error, "injected crash"); }
  std::unique_ptr<file_ops> real_ = posix_file_ops();
  std::atomic<bool> dead_{false};
  std::shared_future<void> release_ = gate_release.get_future().share();
};

// Every test runs the store's callers on ctx_, which outlives the stores the test opens: a worker
// may still be inside its post() to ctx_ when the coroutine it resumed has finished, so a caller's
// io_context must be destroyed only after the store has joined its workers.
class SegmentStore : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "store_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  fs::path dir(int i) const { return root_ / ("d" + std::to_string(i)); }

  options opts(int dirs, std::shared_ptr<file_ops> ops = nullptr) const {
    options o;
    for (int i = 0; i < dirs; ++i) {
      o.data_dirs.push_back(dir(i));
    }
    o.fs = std::move(ops);
    return o;
  }

  static std::unique_ptr<segment_store> open_ok(options o) {
    auto s = segment_store::open(std::move(o));
    if (!s) {
      ADD_FAILURE() << "open: " << s.err().detail;
      return nullptr;
    }
    return std::move(s).value();
  }

  // Runs one store operation to completion on ctx_, on this thread.
  template <class T>
  T run(asio::awaitable<T> op) {
    std::optional<T> out;
    ctx_.restart();
    asio::co_spawn(ctx_, store_into(std::move(op), &out), [](std::exception_ptr e) {
      if (e) {
        std::rethrow_exception(e);
      }
    });
    ctx_.run();
    return std::move(*out);
  }

  // Runs ctx_ on `n` threads until it runs out of work.
  void run_threads(int n) {
    ctx_.restart();
    std::vector<std::thread> threads;
    for (int t = 0; t < n; ++t) {
      threads.emplace_back([this] { ctx_.run(); });
    }
    for (auto& t : threads) {
      t.join();
    }
  }

  result<segment_info> put(segment_store& s, const segment_key& k, const std::string& data) {
    return run(s.put(k, data, sha256(data)));
  }

  asio::io_context ctx_;
  fs::path root_;
};

TEST_F(SegmentStore, PutThenReadBack) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  std::string data = payload(188 * 100, 1);
  auto r = put(*s, key_of("p", 0), data);
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->size, data.size());
  EXPECT_EQ(r->sha256, sha256(data));

  auto found = s->find(key_of("p", 0));
  ASSERT_TRUE(found);
  EXPECT_EQ(found->size, data.size());
  auto f = s->open_segment(key_of("p", 0));
  ASSERT_TRUE(f) << f.err().detail;
  EXPECT_EQ(f->size(), data.size());
  EXPECT_EQ(read_all(f->fd(), f->size()), data);
  EXPECT_EQ(s->list().size(), 1u);
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
}

TEST_F(SegmentStore, SegmentFileIsNamedByIndexSizeAndDigest) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  std::string data = payload(1000, 2);
  ASSERT_TRUE(put(*s, key_of("prog", 7), data));
  fs::path expected = dir(0) / "seg" / "prog" / ("7-1000-" + to_hex(sha256(data)) + ".ts");
  EXPECT_TRUE(fs::is_regular_file(expected));
}

TEST_F(SegmentStore, DigestMismatchWritesNothing) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  auto r = run(s->put(key_of("p", 0), payload(500, 1), sha256("something else")));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::digest_mismatch);
  EXPECT_FALSE(s->find(key_of("p", 0)));
  EXPECT_TRUE(files_under(dir(0) / "seg").empty());
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
}

TEST_F(SegmentStore, TooLargeIsRefused) {
  options o = opts(1);
  o.max_segment_bytes = 1000;
  auto s = open_ok(o);
  ASSERT_TRUE(s);
  EXPECT_TRUE(put(*s, key_of("p", 0), payload(1000, 1)));
  auto r = put(*s, key_of("p", 1), payload(1001, 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::too_large);
  EXPECT_FALSE(s->find(key_of("p", 1)));
  EXPECT_EQ(files_under(dir(0) / "seg").size(), 1u);
}

TEST_F(SegmentStore, SameKeySameDigestIsIdempotent) {
  auto ops = std::make_shared<fault_ops>();
  auto s = open_ok(opts(1, ops));
  ASSERT_TRUE(s);
  std::string data = payload(4096, 3);
  auto first = put(*s, key_of("p", 1), data);
  auto second = put(*s, key_of("p", 1), data);
  ASSERT_TRUE(first);
  ASSERT_TRUE(second) << second.err().detail;
  EXPECT_EQ(second->sha256, first->sha256);
  EXPECT_EQ(second->dir, first->dir);
  EXPECT_EQ(ops->writes.load(), 1);
  EXPECT_EQ(files_under(dir(0) / "seg").size(), 1u);
}

TEST_F(SegmentStore, SameKeyOtherDigestConflicts) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  std::string a = payload(4096, 3);
  ASSERT_TRUE(put(*s, key_of("p", 1), a));
  auto r = put(*s, key_of("p", 1), payload(4096, 4));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::conflict);
  EXPECT_EQ(s->find(key_of("p", 1))->sha256, sha256(a));
  EXPECT_EQ(files_under(dir(0) / "seg").size(), 1u);
}

TEST_F(SegmentStore, OpenSegmentOfMissingKeyIsNotFound) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  auto f = s->open_segment(key_of("p", 0));
  ASSERT_FALSE(f);
  EXPECT_EQ(f.err().code, errc::not_found);
}

TEST_F(SegmentStore, SpreadsSegmentsOverDataDirs) {
  auto s = open_ok(opts(2));
  ASSERT_TRUE(s);
  for (uint32_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(put(*s, key_of("p", i), payload(10'000, i)));
  }
  std::map<uint32_t, int> per_dir;
  for (const segment_info& info : s->list()) {
    per_dir[info.dir] += 1;
  }
  // Both directories sit on one filesystem, so the one holding fewer bytes gets the next segment.
  EXPECT_EQ(per_dir[0], 5);
  EXPECT_EQ(per_dir[1], 5);
  EXPECT_EQ(files_under(dir(0) / "seg").size(), 5u);
  EXPECT_EQ(files_under(dir(1) / "seg").size(), 5u);
}

TEST_F(SegmentStore, StatsCountSegmentsAndBytesPerDir) {
  auto s = open_ok(opts(2));
  ASSERT_TRUE(s);
  ASSERT_TRUE(put(*s, key_of("p", 0), payload(3000, 0)));
  ASSERT_TRUE(put(*s, key_of("p", 1), payload(1000, 1)));
  ASSERT_TRUE(put(*s, key_of("p", 2), payload(500, 2)));
  auto st = s->stats();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].segments + st[1].segments, 3u);
  EXPECT_EQ(st[0].used_bytes + st[1].used_bytes, 4500u);
  EXPECT_EQ(st[0].path, dir(0));
  EXPECT_GT(st[0].total_bytes, 0u);
  EXPECT_LE(st[0].free_bytes, st[0].total_bytes);
  // Both directories are on one filesystem: its space counts once in the totals.
  ASSERT_EQ(st[0].device, st[1].device);
  EXPECT_NE(st[0].device, 0u);
  auto t = totals(st);
  EXPECT_EQ(t.used_bytes, 4500u);
  EXPECT_EQ(t.total_bytes, st[0].total_bytes);
  EXPECT_EQ(t.free_bytes, st[0].free_bytes);
  // Directories on two filesystems each count.
  st[1].device = st[0].device + 1;
  EXPECT_EQ(totals(st).total_bytes, st[0].total_bytes + st[1].total_bytes);
}

TEST_F(SegmentStore, IndexIsRebuiltOnReopen) {
  std::vector<segment_info> before;
  {
    auto s = open_ok(opts(2));
    ASSERT_TRUE(s);
    for (uint32_t i = 0; i < 6; ++i) {
      ASSERT_TRUE(put(*s, key_of(i % 2 ? "odd" : "even", i), payload(2000 + i, i)));
    }
    before = s->list();
  }
  auto s = open_ok(opts(2));
  ASSERT_TRUE(s);
  auto after = s->list();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].key, before[i].key);
    EXPECT_EQ(after[i].size, before[i].size);
    EXPECT_EQ(after[i].sha256, before[i].sha256);
    EXPECT_EQ(after[i].dir, before[i].dir);
  }
  EXPECT_EQ(s->stats()[0].used_bytes + s->stats()[1].used_bytes, 6 * 2000u + 15u);
}

TEST_F(SegmentStore, FailedRenameLeavesNothing) {
  auto ops = std::make_shared<fault_ops>();
  ops->fail_rename = true;
  auto s = open_ok(opts(1, ops));
  ASSERT_TRUE(s);
  auto r = put(*s, key_of("p", 0), payload(1000, 0));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::io_error);
  EXPECT_TRUE(s->list().empty());
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
  EXPECT_TRUE(files_under(dir(0) / "seg").empty());
}

TEST_F(SegmentStore, CrashBeforeRenameIsCleanedAtOpen) {
  {
    auto ops = std::make_shared<fault_ops>();
    ops->crash_at_rename = true;
    auto s = open_ok(opts(1, ops));
    ASSERT_TRUE(s);
    auto r = put(*s, key_of("p", 0), payload(1000, 0));
    ASSERT_FALSE(r);
    EXPECT_TRUE(s->list().empty());
    // The "crashed" process could not clean up: its temp file is still there.
    EXPECT_EQ(files_under(dir(0) / "tmp").size(), 1u);
  }
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
  EXPECT_TRUE(s->list().empty());
  EXPECT_FALSE(s->find(key_of("p", 0)));
}

TEST_F(SegmentStore, FailedDirFsyncIsNotAcknowledged) {
  auto ops = std::make_shared<fault_ops>();
  ops->fail_dir_fsync = true;
  auto s = open_ok(opts(1, ops));
  ASSERT_TRUE(s);
  auto r = put(*s, key_of("p", 0), payload(1000, 0));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::io_error);
  EXPECT_TRUE(s->list().empty());
  EXPECT_TRUE(files_under(dir(0) / "seg").empty());
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
}

TEST_F(SegmentStore, NoSpaceIsReportedAndTempRemoved) {
  auto ops = std::make_shared<fault_ops>();
  ops->no_space = true;
  auto s = open_ok(opts(1, ops));
  ASSERT_TRUE(s);
  auto r = put(*s, key_of("p", 0), payload(1000, 0));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::no_space);
  EXPECT_TRUE(s->list().empty());
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
  EXPECT_TRUE(files_under(dir(0) / "seg").empty());
  // The space comes back: the same put now succeeds.
  ops->no_space = false;
  EXPECT_TRUE(put(*s, key_of("p", 0), payload(1000, 0)));
}

TEST_F(SegmentStore, TornFileIsQuarantinedAtOpen) {
  std::string data = payload(1000, 0);
  fs::path torn = dir(0) / "seg" / "p" / ("3-1000-" + to_hex(sha256(data)) + ".ts");
  write_raw(torn, std::string_view(data).substr(0, 600));
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->list().empty());
  EXPECT_FALSE(fs::exists(torn));
  EXPECT_EQ(files_under(dir(0) / "quarantine").size(), 1u);
}

TEST_F(SegmentStore, UnparseableNamesAreQuarantinedAtOpen) {
  std::string hex = to_hex(sha256("x"));
  std::string upper = hex;
  for (char& c : upper) {
    c = static_cast<char>(std::toupper(c));
  }
  write_raw(dir(0) / "seg" / "p" / "garbage.ts", "x");
  write_raw(dir(0) / "seg" / "p" / ("01-1-" + hex + ".ts"), "x");   // leading zero
  write_raw(dir(0) / "seg" / "p" / ("1-1-" + upper + ".ts"), "x");  // not canonical
  write_raw(dir(0) / "seg" / "p" / ("2-1-" + hex + ".tmp"), "x");   // wrong suffix
  write_raw(dir(0) / "seg" / "bad.program" / ("0-1-" + hex + ".ts"), "x");
  write_raw(dir(0) / "seg" / "stray-file", "x");
  write_raw(dir(0) / "seg" / "p" / ("5-1-" + hex + ".ts"), "x");  // the one good file
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  auto held = s->list();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].key, key_of("p", 5));
  EXPECT_EQ(files_under(dir(0) / "seg").size(), 1u);
  EXPECT_EQ(files_under(dir(0) / "quarantine").size(), 6u);
}

TEST_F(SegmentStore, VerifyOnOpenQuarantinesCorruptFile) {
  segment_info info;
  {
    auto s = open_ok(opts(1));
    ASSERT_TRUE(s);
    auto r = put(*s, key_of("p", 0), payload(1000, 0));
    ASSERT_TRUE(r);
    info = *r;
    ASSERT_TRUE(put(*s, key_of("p", 1), payload(1000, 1)));
  }
  fs::path file =
      dir(0) / "seg" / "p" / layout::segment_file_name(info.key.index, 1000, info.sha256);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(500);
    f.put('\x47');
    f.put('\x48');
  }
  options o = opts(1);
  o.verify_on_open = true;
  auto s = open_ok(o);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->find(key_of("p", 0)));
  EXPECT_TRUE(s->find(key_of("p", 1)));
  EXPECT_EQ(files_under(dir(0) / "quarantine").size(), 1u);
}

TEST_F(SegmentStore, KeyInTwoDirsIsKeptOnce) {
  std::string data = payload(1000, 0);
  std::string name = "0-1000-" + to_hex(sha256(data)) + ".ts";
  write_raw(dir(0) / "seg" / "p" / name, data);
  write_raw(dir(1) / "seg" / "p" / name, data);
  auto s = open_ok(opts(2));
  ASSERT_TRUE(s);
  auto held = s->list();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].dir, 0u);
  EXPECT_EQ(files_under(dir(0) / "seg").size() + files_under(dir(1) / "seg").size(), 1u);
  EXPECT_EQ(files_under(dir(1) / "quarantine").size(), 1u);
}

TEST_F(SegmentStore, RemoveDeletesTheFile) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  ASSERT_TRUE(put(*s, key_of("p", 0), payload(1000, 0)));
  status st = run(s->remove(key_of("p", 0)));
  ASSERT_TRUE(st) << st.err().detail;
  EXPECT_FALSE(s->find(key_of("p", 0)));
  EXPECT_TRUE(files_under(dir(0) / "seg").empty());
  EXPECT_EQ(s->stats()[0].segments, 0u);
  EXPECT_EQ(s->stats()[0].used_bytes, 0u);
  EXPECT_EQ(s->open_segment(key_of("p", 0)).err().code, errc::not_found);
}

TEST_F(SegmentStore, RemoveOfMissingKeyIsNotFound) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  status st = run(s->remove(key_of("p", 0)));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.err().code, errc::not_found);
}

TEST_F(SegmentStore, ListenerHearsAddsAndRemovesOnAWorker) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  std::mutex mu;
  std::vector<std::pair<segment_key, bool>> events;
  std::set<std::thread::id> threads;
  s->set_listener([&](const segment_info& info, bool added) {
    std::lock_guard lock(mu);
    events.emplace_back(info.key, added);
    threads.insert(std::this_thread::get_id());
  });
  std::string data = payload(1000, 0);
  ASSERT_TRUE(put(*s, key_of("p", 0), data));
  ASSERT_TRUE(put(*s, key_of("p", 0), data));  // idempotent: no event
  ASSERT_TRUE(run(s->remove(key_of("p", 0))));
  std::lock_guard lock(mu);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0], std::make_pair(key_of("p", 0), true));
  EXPECT_EQ(events[1], std::make_pair(key_of("p", 0), false));
  EXPECT_FALSE(threads.contains(std::this_thread::get_id()));
}

TEST_F(SegmentStore, AwaitablesResumeOnTheCallersThread) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  std::thread::id worker;
  s->set_listener([&](const segment_info&, bool) { worker = std::this_thread::get_id(); });
  std::optional<std::thread::id> resumed_on;
  auto op = [](segment_store* st, std::optional<std::thread::id>* out) -> asio::awaitable<void> {
    std::string data = payload(100, 0);
    auto r = co_await st->put(key_of("p", 0), data, sha256(data));
    EXPECT_TRUE(r);
    *out = std::this_thread::get_id();
  };
  ctx_.restart();
  asio::co_spawn(ctx_, op(s.get(), &resumed_on), asio::detached);
  ctx_.run();
  ASSERT_TRUE(resumed_on);
  EXPECT_EQ(*resumed_on, std::this_thread::get_id());
  EXPECT_NE(worker, std::this_thread::get_id());
}

TEST_F(SegmentStore, PreloadsHeldSegmentsOnly) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  ASSERT_TRUE(put(*s, key_of("p", 0), payload(100'000, 0)));
  status held = run(s->preload(key_of("p", 0)));
  EXPECT_TRUE(held) << held.err().detail;
  status missing = run(s->preload(key_of("p", 1)));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.err().code, errc::not_found);
}

asio::awaitable<void> put_into(segment_store* s, segment_key k, std::string data,
                               std::optional<result<segment_info>>* out) {
  sha256_digest d = sha256(data);
  out->emplace(co_await s->put(std::move(k), std::move(data), d));
}

TEST_F(SegmentStore, ConcurrentPutsAreAllHeldOnce) {
  auto ops = std::make_shared<fault_ops>();
  auto s = open_ok(opts(2, ops));
  ASSERT_TRUE(s);
  constexpr int keys = 40;
  std::vector<std::optional<result<segment_info>>> results(keys * 2);
  for (int i = 0; i < keys * 2; ++i) {
    uint32_t k = static_cast<uint32_t>(i % keys);  // every key is put twice, concurrently
    asio::co_spawn(ctx_, put_into(s.get(), key_of("c", k), payload(5000 + k, k), &results[i]),
                   asio::detached);
  }
  run_threads(4);
  for (auto& r : results) {
    ASSERT_TRUE(r);
    EXPECT_TRUE(*r) << r->err().detail;
  }
  EXPECT_EQ(s->list().size(), static_cast<size_t>(keys));
  EXPECT_EQ(ops->writes.load(), keys);
  auto on_disk = files_under(dir(0) / "seg").size() + files_under(dir(1) / "seg").size();
  EXPECT_EQ(on_disk, static_cast<size_t>(keys));
  auto st = s->stats();
  EXPECT_GT(st[0].segments, 0u);
  EXPECT_GT(st[1].segments, 0u);
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
  EXPECT_TRUE(files_under(dir(1) / "tmp").empty());
}

// Starts a put of `k` whose write blocks in the gate, then a second put of the same key, and lets
// the first go on only once the second is under way.
void put_twice_through_gate(asio::io_context& ctx, segment_store* s, fault_ops* ops,
                            const segment_key& k, const std::string& data,
                            std::optional<result<segment_info>>* first,
                            std::optional<result<segment_info>>* second) {
  ctx.restart();
  auto work = asio::make_work_guard(ctx);
  std::thread runner([&ctx] { ctx.run(); });
  ops->gate = true;
  asio::co_spawn(ctx, put_into(s, k, data, first), asio::detached);
  ops->gate_entered.get_future().wait();
  asio::co_spawn(ctx, put_into(s, k, data, second), asio::detached);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ops->gate_release.set_value();
  work.reset();
  runner.join();
}

TEST_F(SegmentStore, SecondPutOfAKeyWaitsForTheFirst) {
  auto ops = std::make_shared<fault_ops>();
  auto s = open_ok(opts(2, ops));
  ASSERT_TRUE(s);
  std::optional<result<segment_info>> first;
  std::optional<result<segment_info>> second;
  put_twice_through_gate(ctx_, s.get(), ops.get(), key_of("w", 0), payload(2000, 0), &first,
                         &second);
  ASSERT_TRUE(first && second);
  ASSERT_TRUE(*first) << (*first).err().detail;
  ASSERT_TRUE(*second) << (*second).err().detail;
  EXPECT_EQ((*second)->dir, (*first)->dir);
  EXPECT_EQ(ops->writes.load(), 1);
  EXPECT_EQ(files_under(dir(0) / "seg").size() + files_under(dir(1) / "seg").size(), 1u);
}

TEST_F(SegmentStore, SecondPutWritesItselfWhenTheFirstFails) {
  auto ops = std::make_shared<fault_ops>();
  ops->gate_fails = true;
  auto s = open_ok(opts(2, ops));
  ASSERT_TRUE(s);
  std::optional<result<segment_info>> first;
  std::optional<result<segment_info>> second;
  put_twice_through_gate(ctx_, s.get(), ops.get(), key_of("w", 0), payload(2000, 0), &first,
                         &second);
  ASSERT_TRUE(first && second);
  ASSERT_FALSE(*first);
  EXPECT_EQ((*first).err().code, errc::no_space);
  ASSERT_TRUE(*second) << (*second).err().detail;
  EXPECT_EQ(ops->writes.load(), 2);
  EXPECT_TRUE(s->find(key_of("w", 0)));
  EXPECT_EQ(files_under(dir(0) / "seg").size() + files_under(dir(1) / "seg").size(), 1u);
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
  EXPECT_TRUE(files_under(dir(1) / "tmp").empty());
}

TEST_F(SegmentStore, ConcurrentPutsOfOneKeyWithTwoDigestsLetOneWin) {
  auto s = open_ok(opts(2));
  ASSERT_TRUE(s);
  std::optional<result<segment_info>> a;
  std::optional<result<segment_info>> b;
  asio::co_spawn(ctx_, put_into(s.get(), key_of("x", 0), payload(3000, 1), &a), asio::detached);
  asio::co_spawn(ctx_, put_into(s.get(), key_of("x", 0), payload(3000, 2), &b), asio::detached);
  run_threads(2);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->has_value(), b->has_value());
  const auto& loser = a->has_value() ? *b : *a;
  const auto& winner = a->has_value() ? *a : *b;
  EXPECT_EQ(loser.err().code, errc::conflict);
  EXPECT_EQ(s->find(key_of("x", 0))->sha256, winner->sha256);
  EXPECT_EQ(files_under(dir(0) / "seg").size() + files_under(dir(1) / "seg").size(), 1u);
}

// --- segments arriving over time (begin_put, commit) ---------------------------------------------

TEST_F(SegmentStore, AnIncomingSegmentIsReadableAsWrittenAndHeldOnceCommitted) {
  auto s = open_ok(opts(2));
  ASSERT_TRUE(s);
  std::string data = payload(300'000, 5);
  auto in = s->begin_put(key_of("p", 3), data.size());
  ASSERT_TRUE(in) << in.err().detail;
  auto& f = *in;
  // A temp file of the full size in one directory's tmp/, nothing held yet.
  EXPECT_EQ(files_under(dir(0) / "tmp").size() + files_under(dir(1) / "tmp").size(), 1u);
  ASSERT_TRUE(f->append(std::string_view(data).substr(0, 100'000)));
  EXPECT_EQ(read_all(f->fd(), 100'000), data.substr(0, 100'000));  // behind the written offset
  ASSERT_TRUE(f->append(std::string_view(data).substr(100'000)));
  EXPECT_FALSE(s->find(key_of("p", 3)));
  auto r = run(s->commit(f, sha256(data)));
  ASSERT_TRUE(r) << r.err().detail;
  EXPECT_EQ(r->size, data.size());
  auto opened = s->open_segment(key_of("p", 3));
  ASSERT_TRUE(opened);
  EXPECT_EQ(read_all(opened->fd(), opened->size()), data);
  EXPECT_EQ(read_all(f->fd(), data.size()), data);  // the descriptor is the held file's now
  f.reset();                                        // committed: dropping it removes nothing
  EXPECT_TRUE(s->find(key_of("p", 3)));
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
  EXPECT_TRUE(files_under(dir(1) / "tmp").empty());
  EXPECT_EQ(files_under(dir(0) / "seg").size() + files_under(dir(1) / "seg").size(), 1u);
}

TEST_F(SegmentStore, AnIncomingSegmentWithTheWrongBytesIsNotHeldAndLeavesNothing) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  std::string data = payload(5000, 6);
  auto in = s->begin_put(key_of("p", 4), data.size());
  ASSERT_TRUE(in);
  ASSERT_TRUE((*in)->append(data));
  auto r = run(s->commit(*in, sha256("other bytes")));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::digest_mismatch);
  EXPECT_FALSE(s->find(key_of("p", 4)));
  in->reset();
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
  EXPECT_TRUE(files_under(dir(0) / "seg").empty());
}

TEST_F(SegmentStore, AnIncomingSegmentRefusesWritesPastItsSizeAndTooLargeSizes) {
  options o = opts(1);
  o.max_segment_bytes = 10'000;
  auto s = open_ok(o);
  ASSERT_TRUE(s);
  auto big = s->begin_put(key_of("p", 5), 10'001);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.err().code, errc::too_large);
  EXPECT_FALSE(s->begin_put(key_of("p", 5), 0));
  auto in = s->begin_put(key_of("p", 5), 100);
  ASSERT_TRUE(in);
  ASSERT_TRUE((*in)->append(std::string(90, 'x')));
  auto st = (*in)->append(std::string(11, 'x'));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.err().code, errc::invalid_argument);
  EXPECT_EQ((*in)->written(), 90u);  // nothing of the refused piece was written
  in->reset();                       // dropped uncommitted: its temp file goes
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
}

TEST_F(SegmentStore, AnIncomingSegmentIsNotCommittedBeforeItsLastByte) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  std::string data = payload(4000, 8);
  auto in = s->begin_put(key_of("p", 8), data.size());
  ASSERT_TRUE(in);
  ASSERT_TRUE((*in)->append(std::string_view(data).substr(0, 3999)));
  // The file's last byte is a zero of the sparse file: a digest of the file would not match
  // either, but the refusal must say why, and the segment must not be held.
  auto r = run(s->commit(*in, sha256(data)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::invalid_argument);
  EXPECT_NE(r.err().detail.find("3999 of 4000"), std::string::npos) << r.err().detail;
  EXPECT_FALSE(s->find(key_of("p", 8)));
  // The last byte arrives: the same segment commits.
  ASSERT_TRUE((*in)->append(std::string_view(data).substr(3999)));
  auto done = run(s->commit(*in, sha256(data)));
  ASSERT_TRUE(done) << done.err().detail;
  EXPECT_TRUE(s->find(key_of("p", 8)));
}

TEST_F(SegmentStore, ACommitThatFailsToRenameLeavesNothing) {
  auto ops = std::make_shared<fault_ops>();
  ops->fail_rename = true;
  auto s = open_ok(opts(1, ops));
  ASSERT_TRUE(s);
  std::string data = payload(2000, 7);
  auto in = s->begin_put(key_of("p", 6), data.size());
  ASSERT_TRUE(in);
  ASSERT_TRUE((*in)->append(data));
  auto r = run(s->commit(*in, sha256(data)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::io_error);
  EXPECT_TRUE(s->list().empty());
  in->reset();
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
  EXPECT_TRUE(files_under(dir(0) / "seg").empty());
}

TEST_F(SegmentStore, AnIncomingSegmentMayOutliveItsStore) {
  auto s = open_ok(opts(1));
  ASSERT_TRUE(s);
  auto in = s->begin_put(key_of("p", 7), 1000);
  ASSERT_TRUE(in);
  std::shared_ptr<incoming_segment> kept = std::move(*in);
  s.reset();
  EXPECT_TRUE(kept->append(std::string(1000, 'y')));
  EXPECT_EQ(read_all(kept->fd(), 1000), std::string(1000, 'y'));
  kept.reset();
  EXPECT_TRUE(files_under(dir(0) / "tmp").empty());
}

TEST_F(SegmentStore, OpenRejectsBadOptions) {
  options none;
  auto r = segment_store::open(none);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::invalid_argument);

  options twice;
  twice.data_dirs = {dir(0), dir(0) / "."};
  auto t = segment_store::open(twice);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.err().code, errc::invalid_argument);
}

TEST_F(SegmentStore, OpenFailsOnUnusableDir) {
  write_raw(root_ / "a-file", "x");
  options o;
  o.data_dirs = {root_ / "a-file" / "d"};
  auto r = segment_store::open(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.err().code, errc::io_error);
  EXPECT_NE(r.err().detail.find("a-file"), std::string::npos) << r.err().detail;
}

TEST_F(SegmentStore, DataDirIsOpenInOneStoreAtATime) {
  auto first = open_ok(opts(1));
  ASSERT_TRUE(first);
  auto second = segment_store::open(opts(1));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.err().code, errc::conflict);
  first.reset();
  EXPECT_TRUE(segment_store::open(opts(1)));
}

TEST(SegmentLayout, FileNamesRoundTripAndOnlyCanonicalParse) {
  sha256_digest d = sha256("abc");
  std::string name = layout::segment_file_name(segment_index{42}, 1234, d);
  auto p = layout::parse_segment_file_name(name);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->index.v, 42u);
  EXPECT_EQ(p->size, 1234u);
  EXPECT_EQ(p->sha256, d);
  std::string hex = to_hex(d);
  EXPECT_FALSE(layout::parse_segment_file_name("42-01234-" + hex + ".ts"));
  EXPECT_FALSE(layout::parse_segment_file_name("42--1-" + hex + ".ts"));
  EXPECT_FALSE(layout::parse_segment_file_name("42-1234-" + hex));
  EXPECT_FALSE(layout::parse_segment_file_name("42-1234-" + hex.substr(1) + ".ts"));
  EXPECT_FALSE(layout::parse_segment_file_name("1000000-1-" + hex + ".ts"));
  EXPECT_FALSE(layout::parse_segment_file_name("42-99999999999999999999999-" + hex + ".ts"));
  EXPECT_FALSE(layout::parse_segment_file_name(".ts"));
}

}  // namespace
}  // namespace vodgrid::store
