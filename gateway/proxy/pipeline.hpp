#pragma once
// One API request from parsed head to logged outcome: body validation, the policy
// chain's request phase, upstream attempts (fresh connection after a stale keep-alive
// one, next target on a retryable failure while nothing reached the client), the relay
// of the answer, on_settle before its last write and on_complete exactly once.

#include <boost/asio/awaitable.hpp>

#include <memory>

#include "gateway/core/body_parser.hpp"
#include "gateway/core/snapshot.hpp"
#include "gateway/net/byte_stream.hpp"
#include "gateway/observe/access_log.hpp"
#include "gateway/observe/metrics.hpp"
#include "gateway/proxy/responder.hpp"
#include "gateway/upstream/pool.hpp"
#include "gateway/upstream/provider.hpp"

namespace tollgate::proxy {

// One configuration generation as the data plane uses it.
struct generation {
    std::shared_ptr<const core::snapshot> snap;
    upstream::provider_list providers;                // same order as snap->config.providers
    std::shared_ptr<observe::access_log> access_log;  // null: server.access_log is off
};

// Where the pipeline gets upstream connections (a worker's pools).
class pool_source {
  public:
    virtual upstream::pool& pool_for(const std::shared_ptr<const upstream::provider>& p) = 0;

  protected:
    ~pool_source() = default;
};

struct pipeline_io {
    core::body_parser& parser;
    pool_source& pools;
    responder& out;
    net::byte_stream& client;
    const generation& gen;
    observe::metrics* metrics = nullptr;  // null: not recorded
    unsigned shard = 0;                   // the worker's metrics shard
    // What ctx.body views: given back once the answer has begun. Null: kept.
    std::string* request_body = nullptr;
};

// Answers the request on io.out. On return, io.out.keep_alive() says whether the
// connection can carry another request.
boost::asio::awaitable<void> run_pipeline(pipeline_io& io, core::request_context& ctx);

}  // namespace tollgate::proxy
