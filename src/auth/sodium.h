// libsodium's one-time initialisation, for the auth server's users of it (passwords, sealed keys).
#pragma once

namespace vodgrid::auth {

// Initialises libsodium once per process (later calls return at once); throws if it cannot.
void init_sodium();

}  // namespace vodgrid::auth
