#pragma once
// Configuration generations and reloads (SIGHUP, POST /admin/reload): a config that fails
// --check is refused and the running one stays; a good one is swapped in for new requests.

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "gateway/core/policy_registry.hpp"
#include "gateway/core/snapshot.hpp"
#include "gateway/proxy/pipeline.hpp"

namespace tollgate::observe {
class metrics;
}
namespace tollgate::server {
class server;
}
namespace tollgate::policies {
struct builtin_services;
}

namespace tollgate::app {

// One data-plane generation for `snap`: providers whose config did not change are taken
// over from `previous` (so their workers' pools and TLS contexts live on), and so is the
// access log when its target is the same. Throws std::runtime_error (bad CA file, access
// log not writable). `open_files`: false for --check, which must not create the access
// log (nor fail on a directory that exists only on the host the config is meant for).
std::shared_ptr<const proxy::generation> make_generation(std::shared_ptr<const core::snapshot> snap,
                                                         const proxy::generation* previous,
                                                         bool open_files = true);

// What a reload cannot change in a running process: said in the log, applied at the next
// start.
std::vector<std::string> restart_only_changes(const config::gateway_config& a,
                                              const config::gateway_config& b);

class reloader {
  public:
    reloader(std::string config_path, const core::policy_registry& registry,
             const policies::builtin_services& services, server::server& srv,
             observe::metrics& metrics)
        : path_(std::move(config_path)),
          registry_(registry),
          services_(services),
          srv_(srv),
          metrics_(metrics) {}

    // Re-reads the file and installs it, or says why not ("; "-joined problems). One at a
    // time; never throws (a failure anywhere is a refused reload).
    std::pair<bool, std::string> operator()();

  private:
    std::pair<bool, std::string> once();

    std::string path_;
    const core::policy_registry& registry_;
    const policies::builtin_services& services_;
    server::server& srv_;
    observe::metrics& metrics_;
    std::mutex mutex_;
};

}  // namespace tollgate::app
