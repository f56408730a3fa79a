// The decisions of `vodgrid play --model`, viewers that behave like people: when each arrives,
// which program it picks, how long it watches, where it seeks and pauses. Pure: no I/O and no
// clock, so that a seed decides a run whatever the threads, and the tests can check the decisions
// alone. The player (player.cc) carries them out against a director.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace vodgrid::console {

struct model_options {
  bool enabled = false;
  // Viewers per second of a Poisson process (exponential gaps); 0: every viewer at once.
  double arrival_rate = 0;
  // Popularity: the k-th program (1-based, in the order given) is picked with weight 1 / k^s.
  double zipf_s = 1.0;
  // Mean of the exponential watch time, in media seconds; 0: every viewer watches to the end. The
  // exponential has one parameter (what an operator knows: the mean) and a constant hazard, so
  // most viewers leave early: 63 % before the mean, half before 0.69 of it.
  double watch_mean_seconds = 0;
  double seeks_per_minute = 0;     // of media watched, Poisson; a seek jumps to a uniform position
  double pauses_per_minute = 0;    // of media watched, Poisson
  double pause_mean_seconds = 10;  // exponential
  uint64_t seed = 1;
};
// Why `o` cannot be used (a line naming the option), or nothing.
std::optional<std::string> invalid_model(const model_options& o);

// When each of `viewers` arrives, in seconds after the play starts (non-decreasing): one stream
// drawn from the seed, so that viewer i's arrival does not depend on which thread plays it.
std::vector<double> arrival_times(const model_options& o, uint32_t viewers);

// Which of `programs` (> 0) viewer `viewer` picks: Zipf, from its own stream (seed + viewer).
size_t pick_program(const model_options& o, uint32_t viewer, size_t programs);

struct viewer_event {
  enum class kind { seek, pause };
  kind what = kind::pause;
  double at = 0;     // media seconds watched when it happens
  double value = 0;  // seek: the target, a fraction [0, 1) of the program; pause: seconds
  bool operator==(const viewer_event&) const = default;
};

// What one viewer does with a program of `program_seconds` of media: how long it watches (at most
// the program) and its seeks and pauses, in the order they happen. From its own stream.
struct viewer_plan {
  double watch_seconds = 0;
  std::vector<viewer_event> events;
  bool operator==(const viewer_plan&) const = default;
};
viewer_plan plan_viewer(const model_options& o, uint32_t viewer, double program_seconds);

// One segment in the order a viewer plays them. An event takes effect at the end of the segment
// during which it happens (a player's granularity here is the segment).
struct play_step {
  size_t segment = 0;
  double seconds = 0;       // media seconds of it watched: its duration, or less for the last
  double pause_before = 0;  // seconds paused before it starts
  bool seek = false;  // reached by a seek: asked for only once the viewer seeks, nothing buffered
  bool operator==(const play_step&) const = default;
};
// The steps of `plan` over segments of `durations` (seconds): from segment 0 until the watch time
// is spent or the program's end is reached. A plan without events and a full watch time gives
// every segment once, in order.
std::vector<play_step> schedule(const viewer_plan& plan, const std::vector<double>& durations);

}  // namespace vodgrid::console
