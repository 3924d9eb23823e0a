#pragma once
// Watches the client's socket while the upstream works, so that a client that goes away
// is noticed at once rather than at the next write (which may be minutes away). With
// `cancel_upstream` (routing.on_client_disconnect: cancel) the upstream stream in use is
// cancelled when it does. Lives on the client's executor; not thread-safe.

#include <memory>

#include "gateway/net/byte_stream.hpp"

namespace tollgate::net {

struct client_watch {
    bool active = true;
    bool gone = false;                // the client hung up
    bool cancel_upstream = true;      // cancel `upstream` when it does
    byte_stream* upstream = nullptr;  // the upstream connection in use, if any
    byte_stream* client = nullptr;    // the watched one
};

// Watches from construction to destruction. The wait on the client socket outlives the
// scope, inert, until the client's next bytes (or its close) end it: the session's next
// read queues behind it. A pipelined request's bytes end the watch on plain TCP; on TLS
// the bytes may be the client's close_notify and are looked at again a few times.
class client_watch_scope {
  public:
    client_watch_scope(byte_stream& client, bool cancel_upstream);
    ~client_watch_scope();
    client_watch_scope(const client_watch_scope&) = delete;
    client_watch_scope& operator=(const client_watch_scope&) = delete;

    client_watch& operator*() const noexcept { return *w_; }
    client_watch* operator->() const noexcept { return w_.get(); }

  private:
    byte_stream& client_;
    std::shared_ptr<client_watch> w_;  // shared with the watching coroutine
};

}  // namespace tollgate::net
