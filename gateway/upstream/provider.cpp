#include "gateway/upstream/provider.hpp"

#include <charconv>
#include <stdexcept>

namespace tollgate::upstream {

provider::provider(const config::provider_config& cfg) : cfg_(cfg) {
    if (cfg_.tls) {
        tls_ = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
        tls_->set_options(
            boost::asio::ssl::context::default_workarounds | boost::asio::ssl::context::no_sslv2 |
            boost::asio::ssl::context::no_sslv3 | boost::asio::ssl::context::no_tlsv1 |
            boost::asio::ssl::context::no_tlsv1_1);
        boost::system::error_code ec;
        if (!cfg_.ca_file.empty())
            tls_->load_verify_file(cfg_.ca_file, ec);
        else
            tls_->set_default_verify_paths(ec);
        if (ec)
            throw std::runtime_error("provider " + cfg_.name + ": cannot load CA certificates" +
                                     (cfg_.ca_file.empty() ? "" : " from " + cfg_.ca_file) + ": " +
                                     ec.message());
    }
    const bool default_port = cfg_.port == (cfg_.tls ? 443 : 80);
    const bool v6 = cfg_.host.find(':') != std::string::npos;
    host_header_ = v6 ? "[" + cfg_.host + "]" : cfg_.host;
    if (!default_port) host_header_ += ":" + std::to_string(cfg_.port);
}

bool provider::supports(core::endpoint ep) const noexcept {
    switch (cfg_.kind) {
        case config::provider_kind::openai:
        case config::provider_kind::azure:
            // /v1/messages is translated to chat completions.
            return ep != core::endpoint::models;
        case config::provider_kind::anthropic:
            // Chat completions are translated to the Messages API.
            return ep == core::endpoint::messages || ep == core::endpoint::chat_completions ||
                   ep == core::endpoint::responses;
    }
    return false;
}

void provider::append_target(std::string& t, core::endpoint ep,
                             std::string_view upstream_model) const {
    // `ep` is the upstream's endpoint (after any translation).
    const char* suffix = ep == core::endpoint::embeddings  ? "/embeddings"
                         : ep == core::endpoint::responses ? "/responses"
                                                           : "/chat/completions";
    t += cfg_.base_path;
    switch (cfg_.kind) {
        case config::provider_kind::openai:
            t += suffix;
            return;
        case config::provider_kind::azure: {
            // Azure's Responses API is not per deployment: {base}/openai/v1/responses.
            if (ep == core::endpoint::responses) {
                t += "/openai/v1/responses";
                if (!cfg_.api_version.empty()) {
                    t += "?api-version=";
                    t += cfg_.api_version;
                }
                return;
            }
            t += "/openai/deployments/";
            // A deployment name is a path segment: escape what would change the path.
            for (unsigned char c : upstream_model) {
                if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
                    t += static_cast<char>(c);
                } else {
                    static constexpr char hex[] = "0123456789ABCDEF";
                    t += '%';
                    t += hex[c >> 4];
                    t += hex[c & 15];
                }
            }
            t += suffix;
            t += "?api-version=";
            t += cfg_.api_version;
            return;
        }
        case config::provider_kind::anthropic:
            t += "/v1/messages";
            return;
    }
    t += suffix;
}

void provider::render_head(std::string& out, core::endpoint ep, std::string_view upstream_model,
                           std::size_t content_length, bool stream,
                           std::string_view request_id) const {
    out.clear();
    // One allocation: the fixed text is under 256 bytes, the rest is sized here (an Azure
    // deployment name may triple when escaped).
    out.reserve(256 + cfg_.base_path.size() + cfg_.api_version.size() + 3 * upstream_model.size() +
                host_header_.size() + cfg_.api_key.size() + request_id.size());
    out += "POST ";
    append_target(out, ep, upstream_model);
    out += " HTTP/1.1\r\nhost: ";
    out += host_header_;
    out += "\r\ncontent-type: application/json\r\n";
    out += stream ? "accept: text/event-stream\r\n" : "accept: application/json\r\n";
    if (!cfg_.api_key.empty()) {
        switch (cfg_.kind) {
            case config::provider_kind::openai:
                out += "authorization: Bearer ";
                out += cfg_.api_key;
                out += "\r\n";
                break;
            case config::provider_kind::azure:
                out += "api-key: ";
                out += cfg_.api_key;
                out += "\r\n";
                break;
            case config::provider_kind::anthropic:
                out += "x-api-key: ";
                out += cfg_.api_key;
                out += "\r\nanthropic-version: 2023-06-01\r\n";
                break;
        }
    } else if (cfg_.kind == config::provider_kind::anthropic) {
        out += "anthropic-version: 2023-06-01\r\n";
    }
    out += "x-request-id: ";
    out += request_id;
    out += "\r\nuser-agent: tollgate/0.1\r\ncontent-length: ";
    char digits[24];
    out.append(digits, std::to_chars(digits, digits + sizeof digits, content_length).ptr);
    out += "\r\n\r\n";
}

provider_list make_providers(const config::gateway_config& cfg) {
    provider_list out;
    for (const auto& p : cfg.providers) out.push_back(std::make_shared<const provider>(p));
    return out;
}

}  // namespace tollgate::upstream
