// `vodgrid simulate`: src/sim's day at internet scale, with its baselines, printed.
#include <boost/json/serialize.hpp>

#include <iostream>

#include "cli/commands.h"
#include "sim/sim.h"

namespace vodgrid::cli {

int run_simulate(const simulate_cli_options& opts) {
  sim::options o;
  o.seed = opts.seed;
  o.stations = opts.stations;
  o.programs = opts.programs;
  o.sessions = opts.sessions;
  if (auto why = sim::refusal_for(o)) {
    std::cerr << "vodgrid: " << why->detail << "\n";
    return 2;
  }
  auto r = sim::simulate_with_baselines(o);
  if (opts.json) {
    std::cout << boost::json::serialize(sim::to_json(r)) << "\n";
  } else {
    std::cout << sim::to_text(r);
  }
  return 0;
}

}  // namespace vodgrid::cli
