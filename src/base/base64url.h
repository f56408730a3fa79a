// base64url without padding (RFC 4648 §5), in constant time: tokens and station keys pass through
// it, and the time an encoding takes must not tell which bytes it held.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace vodgrid {

std::string base64url_encode(std::string_view bytes);

// The bytes, or nothing when `text` is not canonical unpadded base64url: padding, whitespace, a
// byte outside the alphabet, an impossible length, or stray bits in the last character.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace vodgrid
