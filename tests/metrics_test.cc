// The Prometheus exposition of net::metrics_registry: histograms, computed families, escaping.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "net/metrics.h"

namespace vodgrid::net {
namespace {

TEST(Metrics, AHistogramRendersCumulativeBucketsItsSumAndItsCount) {
  metrics_registry m;
  auto& h = m.histogram_of("t_seconds", "A test", "route=\"/a\"", {0.25, 1});
  for (double v : {0.0625, 0.25, 0.5, 3.0}) {  // sums exactly in binary
    h.observe(v);
  }
  auto text = m.render();
  EXPECT_NE(text.find("# TYPE t_seconds histogram\n"), std::string::npos) << text;
  // A bound counts the observations at or below it.
  EXPECT_NE(text.find("t_seconds_bucket{route=\"/a\",le=\"0.25\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{route=\"/a\",le=\"1\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("t_seconds_sum{route=\"/a\"} 3.8125\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_count{route=\"/a\"} 4\n"), std::string::npos) << text;
  // The same name and labels give the same histogram; other labels another series.
  EXPECT_EQ(&m.histogram_of("t_seconds", "A test", "route=\"/a\""), &h);
  m.histogram_of("t_seconds", "A test").observe(0.0001);
  text = m.render();
  EXPECT_NE(text.find("t_seconds_count 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{le=\"0.00025\"} 1\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("# TYPE t_seconds histogram"), text.rfind("# TYPE t_seconds histogram"));
}

// Counters and histograms count in the calling thread's slot (issue 16): what several threads
// count at once, and a gauge set after counting, read back exactly.
TEST(Metrics, CountsFromSeveralThreadsAtOnceAddUpExactly) {
  metrics_registry m;
  auto& c = m.counter("t_total", "A test");
  auto& h = m.histogram_of("t_seconds", "A test", "", {0.25, 1});
  auto count = [&](size_t slot) {
    set_thread_slot(slot);
    for (int i = 0; i < 20000; ++i) {
      c.inc();
      h.observe(i % 2 ? 0.125 : 2.0);  // exact in binary
    }
  };
  std::vector<std::thread> threads;
  for (size_t slot : {0, 1, 2, 5}) {  // 5: shares a slot with 1
    threads.emplace_back(count, slot);
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(c.get(), 80000);
  auto text = m.render();
  EXPECT_NE(text.find("t_total 80000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{le=\"0.25\"} 40000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_bucket{le=\"+Inf\"} 80000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_sum 85000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("t_seconds_count 80000\n"), std::string::npos) << text;
  auto& g = m.gauge("t_gauge", "A test");
  std::thread([&] {
    set_thread_slot(3);
    g.inc(7);
  }).join();
  g.set(2);
  EXPECT_EQ(g.get(), 2);
}

TEST(Metrics, ComputedFamiliesCarryTheirTypeAndEveryLabelledSeries) {
  metrics_registry m;
  int calls = 0;
  m.gauges_fn("t_free_bytes", "Free", [&] {
    ++calls;
    return metrics_registry::labelled_values{{"dir=\"/a\"", 5}, {"dir=\"/b\"", 7}};
  });
  m.counters_fn("t_bytes_total", "Bytes", [] {
    return metrics_registry::labelled_values{{"via=\"http\"", 10}};
  });
  m.gauge_fn("t_one", "One", [] { return 1.5; });
  auto text = m.render();
  EXPECT_EQ(calls, 1);
  EXPECT_NE(text.find("# TYPE t_free_bytes gauge\nt_free_bytes{dir=\"/a\"} 5\n"
                      "t_free_bytes{dir=\"/b\"} 7\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE t_bytes_total counter\nt_bytes_total{via=\"http\"} 10\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE t_one gauge\nt_one 1.5\n"), std::string::npos) << text;
}

// The value of the unlabelled series `name` in `text`, or -1.
double series_value(const std::string& text, const std::string& name) {
  auto at = text.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + name.size() + 2));
}

TEST(Metrics, EveryRegistryExposesTheProcessCpuTimeAsPrometheusNamesIt) {
  metrics_registry m;
  volatile uint64_t x = 1;
  for (uint64_t i = 0; i < 50'000'000; ++i) {  // tens of milliseconds of CPU
    x = x * 6364136223846793005ull + i;
  }
  auto text = m.render();
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos) << text;
  double first = series_value(text, "process_cpu_seconds_total");
  EXPECT_GT(first, 0.005) << text;
  for (uint64_t i = 0; i < 50'000'000; ++i) {
    x = x * 6364136223846793005ull + i;
  }
  EXPECT_GT(series_value(m.render(), "process_cpu_seconds_total"), first);
}

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(label_value("/data/a"), "/data/a");
  EXPECT_EQ(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

}  // namespace
}  // namespace vodgrid::net
