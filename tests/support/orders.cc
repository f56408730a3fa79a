#include "support/orders.h"

#include <stdexcept>

#include <fmt/format.h>

#include "base/fs.h"

namespace vodgrid::test {

slow_source::slow_source(const std::filesystem::path& folder, std::vector<std::string> flags) {
  std::vector<std::string> argv{"/usr/bin/python3", VODGRID_TEST_HTTP, std::to_string(port),
                                folder.string()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto p = child_process::spawn(argv, logs.path() / "http.log");
  if (!p) {
    throw std::runtime_error("cannot start test_http.py");
  }
  proc = std::move(*p);
  if (!eventually([&] { return port_is_listening(port); })) {
    throw std::runtime_error("test_http.py did not listen");
  }
}

std::string slow_source::url(const std::string& file) const {
  return fmt::format("http://127.0.0.1:{}/{}", port, file);
}

int slow_source::requests(const std::string& file) const {
  auto text = read_file(logs.path() / "http.log", 1 << 20);
  if (!text) {
    return 0;
  }
  int n = 0;
  for (size_t p = 0; (p = text->find("GET /" + file + " ", p)) != std::string::npos; ++p) {
    ++n;
  }
  return n;
}

}  // namespace vodgrid::test
