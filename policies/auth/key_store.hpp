#pragma once
// key_store: client keys created at run time through the admin API. Each key is stored
// (its SHA-256 digest only, never the secret) in the `api_keys` table of the usage
// database (SQLite, or PostgreSQL when `usage.database` is a postgresql:// URL: see
// key_store_backend.hpp), so it survives restarts and is shared by the instances on that
// database, and published to the data plane as an immutable table swapped atomically: a
// create, change or revoke takes effect for the next request on every worker, and
// requests in flight keep the key they started with.
//
// Thread-safety: lookups (current()) from any thread, lock-free for readers apart from
// the shared_ptr's own; changes and refreshes are serialised by a mutex and write the
// database before they publish, so what the data plane sees is always durable.

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"
#include "config/digest.hpp"
#include "store/key_store_backend.hpp"

namespace tollgate::policies {

// Where keys travel between instances that do not share a database: Redis, when
// `state.backend: redis` (implemented by shared_state). A hash of entries, field → value,
// each value starting with its time; put() keeps whichever version is newer, per field.
// Calls block (bounded by state.timeout); never from the Redis client's own thread.
class key_mirror {
  public:
    virtual ~key_mirror() = default;
    // A number every put() that changed something moves; nullopt when unreachable. 0
    // (never written, or Redis lost its data) makes the store push what it holds.
    virtual std::optional<std::int64_t> version() = 0;
    // Every entry; nullopt when unreachable.
    virtual std::optional<std::vector<std::pair<std::string, std::string>>> load() = 0;
    // Stores each (field, value, time) unless the mirror holds a newer time for the field,
    // and tells every instance; false when unreachable.
    struct entry {
        std::string field, value;
        std::int64_t at_ms = 0;
    };
    virtual bool put(const std::vector<entry>& entries) = 0;
};

using key_digest = config::sha256_digest;

struct digest_hash {
    std::size_t operator()(const key_digest& d) const noexcept;
};

// Parses 64 hex digits; false on anything else.
bool digest_from_hex(std::string_view hex, key_digest& out) noexcept;
// SHA-256 of a presented secret.

class key_store {
  public:
    struct entry {
        std::shared_ptr<const config::key_config> key;
        std::int64_t created_at_ms = 0;
    };
    struct table {
        std::unordered_map<key_digest, std::shared_ptr<const config::key_config>, digest_hash>
            by_digest;
        std::unordered_map<std::string, entry> by_id;
        // Config-file keys revoked through the admin API: digest → id. A config key is
        // refused while its id and its secret's digest are here; a new secret for the id
        // works again.
        std::unordered_map<key_digest, std::string, digest_hash> revoked;
        bool is_revoked(std::string_view id, const key_digest& d) const {
            const auto it = revoked.find(d);
            return it != revoked.end() && it->second == id;
        }
    };

    // Opens (creating it and its directory if need be) the SQLite database at `path`, or
    // connects to the PostgreSQL database of a postgresql:// URL, creates the table if
    // missing and loads the keys. Throws std::runtime_error with a message fit for the log
    // (a URL's password is never in it).
    explicit key_store(const std::string& path);
    ~key_store();
    key_store(const key_store&) = delete;
    key_store& operator=(const key_store&) = delete;

    // The keys now. Never null.
    std::shared_ptr<const table> current() const noexcept { return table_.load(); }

    // Other instances sharing the database (one SQLite file on one host, or one PostgreSQL
    // database) change keys too: re-reads the table when its change marker moved since
    // the last look (SQLite's data_version; PostgreSQL's api_keys_version row) and
    // publishes it. Calls the listener for keys added or changed (with the key as it was
    // before, or null for a new one). Returns true when the keys changed. Thread-safe.
    // Throws std::runtime_error when the database cannot be read (retried next call).
    bool refresh();
    using listener =
        std::function<void(const config::key_config* before, const config::key_config& now)>;
    void set_listener(listener l);
    // Calls refresh() every `every` on a thread of its own until destruction.
    void start_refresh(std::chrono::milliseconds every);
    // Makes that thread refresh now (another instance announced a change). Returns at
    // once; thread-safe. Without start_refresh() it does nothing.
    void refresh_soon();

    enum class result { ok, exists, not_found };
    // Stores a new key (its key_sha256 set). exists: the id or the digest is taken.
    // Throws std::runtime_error when the database refuses the write (nothing published).
    // (Another instance sharing the database may have taken the id a moment ago: exists.)
    result create(config::key_config key, std::int64_t now_ms);
    // Replaces the key's models, limits and budget with those of `updated` (same id).
    // not_found also when another instance deleted it meanwhile.
    result update(const config::key_config& updated);
    result remove(const std::string& id);
    // Revokes a config-file key (its id and the digest the config gives it), durably.
    // exists: revoked already. Throws std::runtime_error when the database refuses it.
    result revoke(const std::string& id, const key_digest& digest, std::int64_t now_ms);

    // Keys through Redis (state.backend: redis): every change is also put in the mirror,
    // and the published table is the database's keys and the mirror's merged — per id the
    // newest version wins (a create or change against a deletion: the later one; a tie:
    // the deletion), revocations are the union. What the database holds and the mirror
    // lacks or has older (changes made while Redis was away, or a Redis that lost its
    // data) is put back at the next refresh. Call before traffic; thread-safe.
    void set_mirror(std::shared_ptr<key_mirror> m);

  private:
    void publish(std::shared_ptr<table> t) { table_.store(std::move(t)); }
    std::shared_ptr<table> load_table();
    // Best-effort: the next refresh retries what did not reach the mirror.
    void mirror_put(std::vector<key_mirror::entry> entries);
    void read_mirror();   // mirror_ entries → remote_*; throws nothing
    void adopt_mirror();  // remote_* newer than the database → the database; throws on failure

    std::unique_ptr<store::key_store_backend> backend_;
    std::mutex mu_;  // serialises changes and refreshes; guards the members up to table_
    std::int64_t change_marker_ = 0;
    std::shared_ptr<key_mirror> mirror_;
    std::optional<std::int64_t> mirror_version_;  // as last read; nullopt: read it again
    // The mirror's entries as last read, decoded.
    std::vector<store::key_row> remote_keys_;
    std::vector<store::deletion_row> remote_deletions_;
    std::vector<store::revocation_row> remote_revocations_;
    listener listener_;
    std::atomic<std::shared_ptr<const table>> table_;
    std::mutex stop_mu_;
    std::condition_variable stop_cv_;
    bool stopping_ = false;
    bool wake_ = false;  // refresh_soon() was called; guarded by stop_mu_
    std::thread refresher_;
};

}  // namespace tollgate::policies
