// The client commands' view of a running grid: blocking JSON requests to its daemons, and where
// each service is, found from the one URL the operator gives (--grid, DESIGN.md).
#pragma once

#include <boost/json/object.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vodgrid::cli {

// GET url with `token` as `Authorization: Bearer` (empty: $VODGRID_TOKEN, if set: reads of a grid
// with an auth server need one); the body as a JSON object if the answer is 200. A refusal for the
// token (401, 403) is errc::unauthorized / forbidden with the server's reason and what to do;
// another status errc::unavailable with the status and body (or the transport's error).
result<boost::json::object> fetch_object(const std::string& url, const std::string& token = {});
// POST (or PUT) a JSON body; the answer's status and JSON object. A JSON error body's "detail"
// becomes the error's detail, with the status's errc. `token`, when not empty, goes as
// `Authorization: Bearer` (an operator's, for the content manager's changes).
result<boost::json::object> send_object(const std::string& method, const std::string& url,
                                        const std::string& body, const std::string& token = {});
// Reads the fields of a daemon's JSON answer, so that an answer lacking a field the command needs
// (a daemon of another version, another daemon than expected) is one clear line, never an
// exception's "out of range". The first field missing or of another type is kept as the error,
// naming the field and the answer ("a program of the registry's /v1/programs has no \"state\"
// (text)"); what it returns meanwhile is empty or zero. Read what is needed, then check error().
class answer_reader {
 public:
  answer_reader(const boost::json::object& o, std::string what);
  std::string text(std::string_view key);
  double number(std::string_view key);
  bool flag(std::string_view key);
  const boost::json::array& array(std::string_view key);
  // The object `key`, or an element of an array, read on with the same error.
  answer_reader object(std::string_view key);
  answer_reader element(const boost::json::value& v, std::string what);
  // errc::protocol_error for the first field missing.
  status error() const;

 private:
  answer_reader(const boost::json::object& o, std::string what, std::shared_ptr<std::string> first);
  const boost::json::value* find(std::string_view key, std::string_view type, bool ok_type);

  const boost::json::object& o_;
  std::string what_;
  std::shared_ptr<std::string> first_;  // shared with the readers of its parts
};

// --token if given, else $VODGRID_TOKEN, else empty.
std::string token_from(const std::string& flag);

// What answers at a grid URL: "registry", "director", "content" or "auth" (from its /healthz).
result<std::string> role_of(const std::string& url);
// The content manager's URL: the grid URL itself if it is one, the registry's [content] if the
// grid URL is a registry, nothing for a lone station's director.
result<std::optional<std::string>> content_url(const std::string& grid);
// The auth server's URL: the grid URL itself if it is one, the registry's [auth] if the grid URL is
// a registry; nothing for a grid without tokens.
result<std::optional<std::string>> auth_url(const std::string& grid);
// The home station's director, from the registry (its stations: an operator's `token`).
result<std::string> home_director(const std::string& registry, const std::string& token = {});

}  // namespace vodgrid::cli
