#pragma once
// A configured provider as the data plane uses it: its TLS context (shared by every
// worker; an ssl::context is safe to share once configured) and how its requests look.

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "gateway/core/request_context.hpp"

namespace tollgate::upstream {

class provider {
  public:
    // Throws std::runtime_error when the TLS setup fails (bad CA file).
    explicit provider(const config::provider_config& cfg);

    const config::provider_config& config() const noexcept { return cfg_; }
    boost::asio::ssl::context* tls() const noexcept { return tls_.get(); }

    // Appends the path and query of the upstream request for this endpoint and upstream
    // model to `out`.
    void append_target(std::string& out, core::endpoint ep, std::string_view upstream_model) const;
    // The request head (request line and headers, blank line included). The provider's
    // key is set here; nothing of the client's credentials is ever copied.
    void render_head(std::string& out, core::endpoint ep, std::string_view upstream_model,
                     std::size_t content_length, bool stream, std::string_view request_id) const;
    bool supports(core::endpoint ep) const noexcept;

  private:
    config::provider_config cfg_;
    std::shared_ptr<boost::asio::ssl::context> tls_;
    std::string host_header_;
};

using provider_list = std::vector<std::shared_ptr<const provider>>;

// Builds one provider per config entry, in config order (indices match).
provider_list make_providers(const config::gateway_config& cfg);

}  // namespace tollgate::upstream
