#pragma once
// key_store: client keys created at run time through the admin API. Each key is stored
// (its SHA-256 digest only, never the secret) in the `api_keys` table of the usage
// database, so it survives restarts, and published to the data plane as an immutable
// table swapped atomically: a create, change or revoke takes effect for the next request
// on every worker, and requests in flight keep the key they started with.
//
// Thread-safety: lookups (current()) from any thread, lock-free for readers apart from
// the shared_ptr's own; changes are serialised by a mutex and write SQLite before they
// publish, so what the data plane sees is always durable.

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

struct sqlite3;

namespace tollgate::policies {

using key_digest = std::array<unsigned char, 32>;

struct digest_hash {
    std::size_t operator()(const key_digest& d) const noexcept;
};

// Parses 64 hex digits; false on anything else.
bool digest_from_hex(std::string_view hex, key_digest& out) noexcept;
// SHA-256 of a presented secret.
key_digest digest_of(std::string_view secret) noexcept;

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
    };

    // Opens (creating it and its directory if need be) the SQLite database at `path` and
    // loads its keys. Throws std::runtime_error with a message fit for the log.
    explicit key_store(const std::string& path);
    ~key_store();
    key_store(const key_store&) = delete;
    key_store& operator=(const key_store&) = delete;

    // The keys now. Never null.
    std::shared_ptr<const table> current() const noexcept { return table_.load(); }

    // Other instances sharing the database (one host, one SQLite file) change keys too:
    // re-reads the table when another connection committed since the last look (SQLite's
    // data_version) and publishes it. Calls the listener for keys added or changed (with
    // the key as it was before, or null for a new one).
    // Returns true when the keys changed. Thread-safe.
    bool refresh();
    using listener =
        std::function<void(const config::key_config* before, const config::key_config& now)>;
    void set_listener(listener l);
    // Calls refresh() every `every` on a thread of its own until destruction.
    void start_refresh(std::chrono::milliseconds every);

    enum class result { ok, exists, not_found };
    // Stores a new key (its key_sha256 set). exists: the id or the digest is taken.
    // Throws std::runtime_error when the database refuses the write (nothing published).
    // (Another instance sharing the database may have taken the id a moment ago: exists.)
    result create(config::key_config key, std::int64_t now_ms);
    // Replaces the key's models, limits and budget with those of `updated` (same id).
    // not_found also when another instance deleted it meanwhile.
    result update(const config::key_config& updated);
    result remove(const std::string& id);

  private:
    void publish(std::shared_ptr<table> t) { table_.store(std::move(t)); }
    std::shared_ptr<table> load_table();
    std::int64_t read_data_version();
    void exec(const char* sql);
    // False when the row was not written: the id or digest is taken (insert), or the
    // row is gone (update).
    bool write(const config::key_config& k, std::int64_t created_at_ms, bool insert);

    std::string path_;
    sqlite3* db_ = nullptr;
    std::mutex mu_;  // serialises changes and refreshes; guards the members up to table_
    std::int64_t data_version_ = 0;
    listener listener_;
    std::atomic<std::shared_ptr<const table>> table_;
    std::mutex stop_mu_;
    std::condition_variable stop_cv_;
    bool stopping_ = false;
    std::thread refresher_;
};

}  // namespace tollgate::policies
