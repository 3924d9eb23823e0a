#pragma once
// The admin listener (admin.listen): its own thread and io_context, so that a slow
// admin query never delays the data plane. Every route needs `Authorization: Bearer
// <admin.token>` (compared in constant time, as SHA-256 digests); without a configured
// token the admin API refuses everything, except routes marked open_on_loopback while
// the listener is bound to a loopback address, and the console's assets (route.open).

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace tollgate::server {

struct admin_request {
    std::string_view method;
    std::string_view path;
    std::string_view query;  // after '?', undecoded
    std::string_view body;
    std::string_view if_none_match;  // for the console's cached assets
};

struct admin_reply {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    // Further headers. Every reply also gets `X-Content-Type-Options: nosniff`, and
    // `Cache-Control: no-store` unless it sets a Cache-Control of its own (admin answers
    // hold key secrets and spend: no cache keeps them).
    std::vector<std::pair<std::string, std::string>> headers;
};

struct admin_route {
    std::string method;
    std::string path;  // exact, or a prefix when `prefix` (e.g. "/admin/keys/" + id)
    std::function<admin_reply(const admin_request&)> handler;  // runs on the admin thread
    bool prefix = false;
    // Answers without the token when the admin listener is on a loopback address
    // (SPEC: /metrics).
    bool open_on_loopback = false;
    // Answers without the token anywhere: the console's static assets (they hold no
    // data; the page asks for the token and sends it with each admin API call).
    bool open = false;
};

class admin_server {
  public:
    // Binds admin.listen (throws std::runtime_error if it cannot) and starts serving on
    // its own thread. Logs the bound address.
    admin_server(const config::admin_config& cfg, std::vector<admin_route> routes);
    ~admin_server();  // stops the thread

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace tollgate::server
