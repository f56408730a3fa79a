// Token parsing and checking (src/auth): parse_token, the verifier (with a fixed key), the URL
// signature check, and the auth JSON decoders (keys, login replies). A token that parses must
// re-sign to a token that parses to the same claims.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "auth/client.h"
#include "auth/keys.h"
#include "auth/token.h"
#include "auth/url_signer.h"
#include "auth/verifier.h"

namespace auth = vodgrid::auth;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auth::signing_key key = auth::signing_key::from_seed("k1", std::string(32, 's')).value();
  static auth::token_verifier* verifier = [] {
    auto* v = new auth::token_verifier(auth::verifier_options{.cache_entries = 64});
    v->set_keys({key.public_part()});
    return v;
  }();
  static auth::url_signer signer(std::string(32, 'u'));
  std::string_view text(reinterpret_cast<const char*>(data), size);

  auto t = auth::parse_token(text);
  if (t) {
    auto again = auth::parse_token(key.issue(t->body));
    if (!again || !(again->body == t->body)) {
      std::abort();
    }
  }
  (void)auth::token_kid(text);
  auth::requirement req;
  req.program = vodgrid::program_id::parse("news");
  req.address = "127.0.0.1";
  (void)verifier->verify(text, req, 1'800'000'000);
  (void)signer.verify(text, 1'800'000'000);
  (void)auth::decode_keys(text);
  (void)auth::decode_login_reply(text);
  return 0;
}
