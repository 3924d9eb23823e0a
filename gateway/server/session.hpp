#pragma once
// One client connection: reads requests (strict framing, limits, timeouts), answers the
// gateway's own endpoints, and hands API requests to the proxy pipeline. Lives on one
// worker's io_context; destroyed when its coroutine ends.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <list>
#include <memory>

#include "config/cidr.hpp"
#include "gateway/net/byte_stream.hpp"

namespace tollgate::server {

class worker;

class session {
  public:
    session(worker& w, boost::asio::ip::tcp::socket socket, boost::asio::ssl::context* tls);
    ~session();

    boost::asio::awaitable<void> run();
    // Drain: close now if idle between requests, else after the current response.
    void drain() noexcept;

  private:
    worker& worker_;
    config::ip_address peer_;  // the connection's peer (read before the socket moves)
    net::byte_stream client_;
    std::list<session*>::iterator registration_;
    bool idle_ = true;
    bool first_request_ = true;
};

}  // namespace tollgate::server
