#include "auth/sodium.h"

#include <sodium.h>

#include <stdexcept>

namespace vodgrid::auth {

void init_sodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) {
    throw std::runtime_error("libsodium could not initialise");
  }
}

}  // namespace vodgrid::auth
