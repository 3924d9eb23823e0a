#pragma once
// A blocking HTTP/1.1 client for integration tests, on 127.0.0.1 only. Every socket
// operation has a timeout so a test can fail but never hang.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tollgate::test {

struct http_response {
    int status = 0;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    bool keep_alive = true;
    std::string header(const std::string& name) const {
        auto it = headers.find(name);
        return it == headers.end() ? std::string() : it->second;
    }
};

using header_map = std::vector<std::pair<std::string, std::string>>;

class http_connection {
  public:
    // tls: unverified, for test servers. receive_buffer > 0: SO_RCVBUF (no autotuning), for
    // a client that reads slowly.
    explicit http_connection(std::uint16_t port,
                             std::chrono::milliseconds timeout = std::chrono::seconds(30),
                             bool tls = false, int receive_buffer = 0);
    ~http_connection();

    // Sends one request and reads the whole response.
    http_response request(const std::string& method, const std::string& target,
                          const header_map& headers = {}, const std::string& body = {});
    void send_request(const std::string& method, const std::string& target,
                      const header_map& headers, const std::string& body);
    void send_raw(const std::string& bytes);
    // Reads one whole response (after send_request / send_raw).
    http_response read_response();
    // Reads only the head of a response; then read_body_some() gives body bytes as they
    // arrive (de-chunked); empty string at the end of the body.
    http_response read_head();
    std::string read_body_some();
    // True if the server closed the connection (reads EOF or reset within the timeout).
    bool closed_by_peer();
    void close();

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// One-shot helpers.
http_response http_request(std::uint16_t port, const std::string& method, const std::string& target,
                           const header_map& headers = {}, const std::string& body = {},
                           bool tls = false);

// The `data:` payloads of an SSE body, in order.
std::vector<std::string> sse_data(const std::string& body);

}  // namespace tollgate::test
