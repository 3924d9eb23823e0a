#pragma once
// key_store_backend: where key_store keeps the keys created through the admin API — the
// `api_keys` table of the usage database, in SQLite (a file path) or PostgreSQL (a
// postgresql:// URL). key_store holds the logic (what a change means, what to publish);
// a backend only reads and writes rows.
//
// Thread-safety: none; key_store serialises every call with its mutex.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tollgate::store {

// One row of api_keys, as stored (both databases use the same columns).
struct key_row {
    std::string id;
    std::string key_sha256;             // 64 lowercase hex digits
    std::optional<std::string> models;  // model names joined by '\x1f'; null = every model
    std::optional<std::uint64_t> rpm, tpm, concurrency;
    std::optional<std::uint64_t> budget_tokens;
    std::optional<double> budget_usd;
    std::optional<std::string> budget_period;  // "day" | "month" | "total"; null = no budget
    std::optional<std::string> allowed_cidrs;  // CIDR ranges joined by '\x1f'; null = any
    std::int64_t created_at_ms = 0;
    // When this version of the key was made (create or change), on the clock of the
    // instance that made it: between a database, Redis and a deletion, the newest wins.
    std::int64_t updated_at_ms = 0;
};

// A key deleted through the admin API (api_key_deletions): it stays deleted unless a
// version made later (a create or change after the deletion) exists somewhere.
struct deletion_row {
    std::string id;
    std::int64_t deleted_at_ms = 0;
};

// A revoked config-file key (api_key_revocations): refused while the config gives that id
// this secret; a new secret for the id (a new digest) works again.
struct revocation_row {
    std::string id;
    std::string key_sha256;  // 64 lowercase hex digits
    std::int64_t revoked_at_ms = 0;
};

class key_store_backend {
  public:
    virtual ~key_store_backend() = default;

    // Every row. Throws std::runtime_error (nothing partial is returned).
    virtual std::vector<key_row> load() = 0;
    // A cheap value that changes whenever another instance (or this one) committed a
    // change to api_keys, so the 1-s refresher reloads only then. Throws on failure.
    virtual std::int64_t change_marker() = 0;
    // False when nothing was written: the id or the digest is taken (insert), no such id
    // (update, remove). Throws std::runtime_error when the database refuses the write.
    // update() writes models, limits and budget only.
    virtual bool insert(const key_row& row) = 0;
    virtual bool update(const key_row& row) = 0;
    virtual bool remove(const std::string& id) = 0;
    // Inserts the row, or replaces every column of the row with its id (a version made on
    // another instance). False when its digest belongs to another id.
    virtual bool upsert(const key_row& row) = 0;
    // Deletions: remove() leaves none by itself; record_deletion() keeps (or moves later)
    // the id's deletion time.
    virtual std::vector<deletion_row> load_deletions() = 0;
    virtual void record_deletion(const deletion_row& row) = 0;
    // Revocations of config-file keys. insert_revocation: false when that id and digest
    // are revoked already. Both throw std::runtime_error like the others.
    virtual std::vector<revocation_row> load_revocations() = 0;
    virtual bool insert_revocation(const revocation_row& row) = 0;
};

// `path`: the usage database (a SQLite file path or a postgresql:// URL). All three throw
// std::runtime_error naming the database (redacted URL) and the cause.
std::unique_ptr<key_store_backend> make_key_store_backend(const std::string& path);
std::unique_ptr<key_store_backend> make_sqlite_key_store_backend(const std::string& path);
std::unique_ptr<key_store_backend> make_pg_key_store_backend(const std::string& url);

}  // namespace tollgate::store
