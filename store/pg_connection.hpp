#pragma once
// pg_connection: one libpq connection to the PostgreSQL database named by a
// `usage.database: postgresql://…` URL, shared in kind (not in instance) by the usage
// ledger's writer, its readers and the key store.
//
// Secrets: the URL may carry a password (user:password@host, or ?password=). Nothing
// this file produces (name(), error(), exception messages) contains the URL or the
// password: the server is named host:port/dbname, and libpq's messages are scrubbed.
//
// Thread-safety: none. Each user owns its connection and serialises its use (the ledger's
// writer thread, the ledger's reader mutex, the key store's mutex).
// Blocking: every call blocks on the network. Connecting gives up after 5 s (unless the
// URL says otherwise); TCP keepalives and tcp_user_timeout bound how long a dead server
// can hold a query (about 30 s).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/database_url.hpp"

// libpq's PGconn and PGresult are typedefs of these.
struct pg_conn;
struct pg_result;

namespace tollgate::store {

// One result of a query; the text accessors read libpq's text format.
class pg_result_ptr {
  public:
    pg_result_ptr() = default;
    explicit pg_result_ptr(pg_result* r) noexcept : r_(r) {}
    // True for a command or query that completed (PGRES_COMMAND_OK / PGRES_TUPLES_OK).
    bool ok() const noexcept;
    int rows() const noexcept;
    bool is_null(int row, int col) const noexcept;
    std::string_view text(int row, int col) const noexcept;
    std::optional<std::string> opt_text(int row, int col) const;
    // NULL or unparsable reads 0 (uint64 saturates: PostgreSQL's SUM of BIGINT is NUMERIC).
    std::int64_t int64(int row, int col) const noexcept;
    std::uint64_t uint64(int row, int col) const noexcept;
    double dbl(int row, int col) const noexcept;
    // The SQLSTATE of a failed statement ("23505"...), empty if none.
    std::string_view sqlstate() const noexcept;
    pg_result* get() const noexcept { return r_.get(); }

  private:
    struct clear {
        void operator()(pg_result* r) const noexcept;
    };
    std::unique_ptr<pg_result, clear> r_;
};

class pg_connection {
  public:
    // Parses `url` (throws std::runtime_error, without the URL, if libpq cannot parse it);
    // does not connect. `what` prefixes messages ("usage ledger", "key store").
    pg_connection(std::string url, std::string what);
    ~pg_connection();
    pg_connection(const pg_connection&) = delete;
    pg_connection& operator=(const pg_connection&) = delete;

    // "host:port/dbname": how logs and errors name the server.
    const std::string& name() const noexcept { return name_; }

    // Connects, or reconnects when the connection broke (a failed query noticed it).
    // True when usable; otherwise `error` says why (scrubbed).
    bool ensure(std::string& error);
    // ensure(), throwing std::runtime_error("<what>: <name>: <why>") on failure.
    void ensure_or_throw();
    // Incremented by every (re)connect: server-side state (prepared statements) is gone.
    std::uint64_t generation() const noexcept { return generation_; }
    // The connection is known broken (a reset is due).
    bool broken() const noexcept;

    // Simple-protocol query (may hold several statements; the last one's result).
    pg_result_ptr exec(const char* sql);
    // One statement with text parameters ($1…; nullptr = NULL) and text results.
    pg_result_ptr exec_params(const std::string& sql, const std::vector<const char*>& values);
    // Runs `sql`; throws std::runtime_error("<what>: <name>: <context>: <error>") unless ok.
    pg_result_ptr exec_or_throw(const char* sql, std::string_view context);

    // libpq's last error for `r` (or the connection's), one line, password scrubbed.
    std::string error(const pg_result_ptr& r) const;
    // "<what>: <name>: <context>: <why>".
    std::string describe(std::string_view context, const std::string& why) const;

    pg_conn* raw() const noexcept { return conn_; }

  private:
    std::string scrub(std::string msg) const;

    std::string url_;
    std::string what_;
    std::string name_;
    std::string password_;  // only to scrub it out of libpq's messages
    pg_conn* conn_ = nullptr;
    std::uint64_t generation_ = 0;
};

// `s` as PostgreSQL TEXT accepts it: bytes that are not well-formed UTF-8, and NUL, become
// U+FFFD (SQLite stores any bytes; a record the server rejects would block the ledger).
// Returns `s` itself when it is fine (the common case), else `scratch` filled.
std::string_view pg_safe_text(std::string_view s, std::string& scratch);

}  // namespace tollgate::store
