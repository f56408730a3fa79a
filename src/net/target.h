// The request target: its path and decoded query, taken by hand in the common case (a plain path
// and a plain query) and through Boost.URL otherwise. Private to the server; here to be tested.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vodgrid::net {

struct request_context;

// True if `path` (a target without its query) is made of '/' and the pchar characters of RFC 3986
// only, without percent-escapes, and starts with '/' (origin-form, RFC 9112 §3.2.1): it is then
// the path itself.
bool plain_path(std::string_view path);

// Splits a query made only of unreserved characters, '=' and '&' into `out`: views into `q`. False,
// and `out` untouched, for any other query.
bool split_plain_query(std::string_view q,
                       std::vector<std::pair<std::string_view, std::string_view>>& out);

// Sets ctx.path and ctx.query from an origin-form request target. False if it is malformed.
// ctx.query's views point into `target` (a plain query) or ctx.decoded: `target` must outlive
// them (the server's is the target of ctx.req, which keeps it in place when moved).
bool parse_target(std::string_view target, request_context& ctx);

}  // namespace vodgrid::net
