// The auth daemon's database, through src/db (SQLite or PostgreSQL): accounts, signing keys and
// station keys. Threading: one thread at a time (the daemon's database thread).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "auth/keys.h"
#include "auth/sealed.h"
#include "auth/token.h"
#include "base/result.h"
#include "db/db.h"

namespace vodgrid::auth {

// A subscriber (kind viewer), an engine or director (kind engine) or an operator.
struct account {
  token_kind kind = token_kind::viewer;
  std::string name;  // valid_name
  std::string hash;  // Argon2id string of the password or engine secret
  bool all_programs = false;
  std::vector<program_id> programs;  // subscribers: entitlement when !all_programs
  std::string station;               // engine accounts: the station they belong to
};

// The URL segment naming each kind of account: subscribers, engines, operators.
std::string_view account_collection(token_kind k);
std::optional<token_kind> parse_account_collection(std::string_view s);

class auth_store {
 public:
  // Opens the database and creates the schema if needed.
  static result<std::unique_ptr<auth_store>> open(std::string_view url);
  explicit auth_store(std::unique_ptr<db::connection> c) : c_(std::move(c)) {}

  status put_account(const account& a);  // insert or replace
  // Inserts unless an account of that kind and name exists; true if inserted.
  result<bool> add_account_if_missing(const account& a);
  result<std::optional<account>> find_account(token_kind kind, std::string_view name);
  result<std::vector<account>> list_accounts();
  result<bool> delete_account(token_kind kind, std::string_view name);

  result<std::vector<key_entry>> load_keys();
  // Writes `changed` (upsert) and deletes `removed`, in one transaction.
  status save_keys(const std::vector<key_entry>& changed, const std::vector<std::string>& removed);

  // The station's URL-signing key, made on first use.
  result<std::string> station_key(std::string_view station);

  // Secrets at rest (issue 17): once set, every signing-key seed and station key written is sealed
  // with `s`, and sealed ones read are opened with it (errc::forbidden: another key-encryption
  // key). Without one (tests of older databases) they are read and written as they are.
  void set_sealer(std::shared_ptr<const key_sealer> s) { sealer_ = std::move(s); }
  // Whether any stored key is sealed: a missing key file must then not be replaced by a new one.
  result<bool> has_sealed_keys();
  // Seals, in one transaction, the plaintext keys a database made before sealing holds; returns
  // how many. Precondition: a sealer.
  result<size_t> seal_plaintext_keys();

  db::connection& connection() { return *c_; }

 private:
  // A stored key's bytes, opened with the sealer when sealed.
  result<std::string> opened(const std::string& stored, const std::string& context) const;
  std::string sealed(std::string_view plain, const std::string& context) const;

  std::unique_ptr<db::connection> c_;
  std::shared_ptr<const key_sealer> sealer_;
};

}  // namespace vodgrid::auth
