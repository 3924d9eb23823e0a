#pragma once
// redis_client: our own RESP client on Asio, for the shared rate/budget state and the
// key-change channel (state.backend: redis).
//
// Why our own and not hiredis: the gateway needs a handful of commands (EVALSHA, EVAL,
// SCRIPT LOAD, PUBLISH, SUBSCRIBE, AUTH, SELECT, PING), pipelining of everything that
// arrives while a write is in flight, a deadline per command and fail-fast while down;
// RESP2 is ~150 lines to parse (resp.hpp, fuzzed), and an adapter over hiredis's async
// API would still need all of the connection handling below plus hiredis's own buffer
// copies and callbacks.
//
// Threading: the client runs ONE thread of its own with its own io_context (the home),
// holding `pool_size` connections. exec() and eval() may be called from any thread: the
// command is posted to the home thread, appended to a connection's outgoing buffer (round
// robin over the connections that are up) and written with whatever else queued
// meanwhile (one write and, for Redis, one read for a whole batch). Replies come back in
// order; `done` runs on the home thread.
//
// Lanes: call_eval() is the coroutine form for a worker, and a worker's requests should
// not hop to another thread and back (on a busy core that is two context switches per
// request). When the caller runs on an io_context other than the home one, the client
// opens a connection of its own on that io_context (its lane, on first use) and the call
// goes out and comes back on the caller's thread; until the lane is up (and whenever it
// is down) the call goes by the home connections instead. A lane lives as long as its
// io_context runs it: it ends with the io_context (or with the client, whichever is
// first).
//
// Failure: while no connection is up, exec() fails at once (status::unavailable), so
// callers apply their fail mode without waiting. A command unanswered after `timeout`
// fails with status::timeout, and its connection is dropped (every command on it fails)
// and reconnected: a Redis that does not answer in time is treated as unreachable.
// Reconnects back off exponentially from 50 ms to 2 s. On every (re)connect the
// connection sends AUTH (password/user from the URL), SELECT (db), PING (a connection
// counts as up only once Redis answered) and, for the
// subscriber, SUBSCRIBE.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/state/resp.hpp"

namespace tollgate::state {

// The parts of redis://[[user]:password@]host[:port][/db] and rediss:// (TLS).
struct redis_endpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    std::string user, password;  // empty = no AUTH
    unsigned db = 0;
    bool tls = false;
    // host:port/db, never the password: for logs and errors.
    std::string redacted() const;
};

// Throws std::invalid_argument with a message that never contains the password.
redis_endpoint parse_redis_url(std::string_view url);

struct redis_options {
    redis_endpoint endpoint;
    std::chrono::milliseconds timeout{200};
    std::uint32_t pool_size = 1;
    std::string tls_ca_file;     // empty = the system's CA store
    std::string name = "state";  // for the log
    // Lua sources loaded (SCRIPT LOAD) on every (re)connect, so that EVALSHA finds them
    // without a NOSCRIPT round trip per command in flight after a Redis restart.
    std::vector<std::string> preload;
};

struct redis_reply {
    // unavailable: not sent (no connection up); timeout: sent, unanswered within the
    // deadline; lost: sent, and the connection broke before the answer. After timeout
    // and lost the command may or may not have run.
    enum class status { ok, unavailable, timeout, lost };
    status how = status::unavailable;
    resp_value value;  // when ok; may be a Redis error reply (value.is_error())
    bool ok() const noexcept { return how == status::ok && !value.is_error(); }
};

class redis_client {
  public:
    using handler = std::function<void(redis_reply)>;

    // Starts the thread and the first connection attempts; does not wait for them.
    explicit redis_client(redis_options opts);
    // Fails every pending command, closes the connections, joins the thread.
    ~redis_client();
    // The same, now (idempotent): no callback runs once it returns.
    void close();
    redis_client(const redis_client&) = delete;
    redis_client& operator=(const redis_client&) = delete;

    // Thread-safe. `done` runs exactly once, on the client's thread.
    void exec(std::vector<std::string> args, handler done);

    // A Lua script run by EVALSHA (the object must outlive every call: keep scripts
    // static); on NOSCRIPT (Redis restarted or flushed its script
    // cache) the same call is sent again as EVAL, which caches it again.
    struct script {
        std::string source;
        std::string sha1;  // hex
        explicit script(std::string src);
    };
    void eval(const script& s, std::vector<std::string> keys, std::vector<std::string> args,
              handler done);
    // From a coroutine: by the caller's lane (see the top of this file); resumes on the
    // caller's executor.
    boost::asio::awaitable<redis_reply> call_eval(const script& s, std::vector<std::string> keys,
                                                  std::vector<std::string> args);

    // Opens one more connection in subscriber mode on `channel`; `on_message` runs on the
    // client's thread for every message (payload), and once with an empty view after
    // each (re)subscription, so the listener can catch up on what it may have missed.
    // Call at most once, before traffic.
    void subscribe(std::string channel, std::function<void(std::string_view)> on_message);

    // Waits up to `limit` for a connection to be up; true if one is. Not from the
    // client's thread.
    bool wait_connected(std::chrono::milliseconds limit);

    // Lock-free snapshots for metrics and readiness (connected: a home connection is up).
    bool connected() const noexcept;
    std::uint64_t commands() const noexcept;
    std::uint64_t writes() const noexcept;
    std::uint64_t failures() const noexcept;
    std::uint64_t reconnects() const noexcept;
    // Lanes opened (one per worker io_context that called) and commands sent by them.
    std::uint64_t lanes() const noexcept;
    std::uint64_t lane_commands() const noexcept;

    // The client's executor: for timers of the caller's own (lease renewal).
    boost::asio::any_io_executor executor() const;

  private:
    struct impl;
    class connection;
    static void send(const std::shared_ptr<impl>& im, const std::shared_ptr<connection>& lane,
                     std::string bytes, handler done);
    static void send_home(const std::shared_ptr<impl>& im, std::string bytes, handler done);
    void send_eval(std::shared_ptr<connection> lane, const script& s, std::vector<std::string> keys,
                   std::vector<std::string> args, handler done);
    std::shared_ptr<connection> lane_for(const boost::asio::any_io_executor& ex);
    // Shared with the connections: a lane may outlive the client by a moment.
    std::shared_ptr<impl> impl_;
};

}  // namespace tollgate::state
