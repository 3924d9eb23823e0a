#include "gateway/core/config_json.hpp"

#include "gateway/core/json_text.hpp"

namespace tollgate::core {

namespace jt = json_text;

namespace {

constexpr const char* hidden = "***";

// A small writer: commas in one place.
class writer {
  public:
    writer& open(char c) {
        value();
        out_ += c;
        first_ = true;
        return *this;
    }
    writer& close(char c) {
        out_ += c;
        first_ = false;
        return *this;
    }
    writer& key(std::string_view k) {
        value();
        jt::append_string(out_, k);
        out_ += ':';
        after_key_ = true;
        return *this;
    }
    writer& str(std::string_view s) {
        value();
        jt::append_string(out_, s);
        return *this;
    }
    writer& uint(std::uint64_t v) {
        value();
        jt::append_uint(out_, v);
        return *this;
    }
    writer& num(double v) {
        value();
        jt::append_double(out_, v);
        return *this;
    }
    writer& boolean(bool b) {
        value();
        out_ += b ? "true" : "false";
        return *this;
    }
    writer& null() {
        value();
        out_ += "null";
        return *this;
    }
    writer& dur(config::duration d) {
        const auto ms = d.count();
        return str(ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms");
    }
    writer& strings(const std::vector<std::string>& v) {
        open('[');
        for (const auto& s : v) str(s);
        return close(']');
    }
    template <class T>
    writer& opt_uint(const std::optional<T>& v) {
        return v ? uint(*v) : null();
    }
    std::string take() { return std::move(out_); }

  private:
    void value() {
        if (after_key_) {
            after_key_ = false;
            return;
        }
        if (!first_) out_ += ',';
        first_ = false;
    }
    std::string out_;
    bool first_ = true, after_key_ = false;
};

std::string listen_text(const config::listen_address& a) {
    return a.host.find(':') != std::string::npos ? "[" + a.host + "]:" + std::to_string(a.port)
                                                 : a.text();
}

}  // namespace

std::string redact_url(const std::string& url) {
    std::string out = url;
    // The user info ends at the last '@' (as the Redis URL parser reads it: a password may
    // hold '/', '?', '#' or '@'). With a ':' the password follows it; without one, a Redis
    // URL's user info is the password itself: all of it goes. An '@' elsewhere (a path)
    // hides more than needed, never less.
    const auto scheme = out.find("://");
    if (scheme != std::string::npos) {
        const auto start = scheme + 3;
        const auto at = out.rfind('@');
        if (at != std::string::npos && at >= start) {
            const auto colon = out.find(':', start);
            if (colon != std::string::npos && colon < at)
                out.replace(colon + 1, at - colon - 1, hidden);
            else if (at > start)
                out.replace(start, at - start, hidden);
        }
    }
    // libpq key=value parameters in a URL query or a conninfo string.
    for (std::size_t p = out.find("password="); p != std::string::npos;
         p = out.find("password=", p + 1)) {
        const auto v = p + 9;
        const auto e = out.find_first_of("& ", v);
        out.replace(v, (e == std::string::npos ? out.size() : e) - v, hidden);
    }
    return out;
}

std::string config_json(const config::gateway_config& cfg, const std::vector<std::string>& chain) {
    writer w;
    w.open('{');

    const auto& s = cfg.server;
    w.key("server").open('{');
    w.key("listen").open('[');
    for (const auto& a : s.listen) w.str(listen_text(a));
    w.close(']');
    w.key("threads").uint(s.threads);
    w.key("max_request_bytes").uint(s.max_request_bytes);
    w.key("max_header_bytes").uint(s.max_header_bytes);
    w.key("header_timeout").dur(s.header_timeout);
    w.key("idle_timeout").dur(s.idle_timeout);
    w.key("drain_timeout").dur(s.drain_timeout);
    w.key("write_timeout").dur(s.write_timeout);
    w.key("max_connections").uint(s.max_connections);
    w.key("max_pipelined").uint(s.max_pipelined);
    w.key("access_log").str(s.access_log);
    w.key("tls");
    if (s.tls)
        w.open('{').key("cert").str(s.tls->cert).key("key").str(s.tls->key).close('}');
    else
        w.null();
    w.close('}');

    w.key("admin").open('{');
    w.key("listen");
    if (cfg.admin.listen)
        w.str(listen_text(*cfg.admin.listen));
    else
        w.null();
    w.key("token");
    if (cfg.admin.token.empty())
        w.null();
    else
        w.str(hidden);
    w.close('}');

    w.key("providers").open('{');
    for (const auto& p : cfg.providers) {
        w.key(p.name).open('{');
        w.key("kind").str(p.kind == config::provider_kind::openai  ? "openai"
                          : p.kind == config::provider_kind::azure ? "azure"
                                                                   : "anthropic");
        w.key("base_url").str(redact_url(p.base_url));
        w.key("api_key");
        if (p.api_key.empty())
            w.null();
        else
            w.str(hidden);
        if (p.kind == config::provider_kind::azure) w.key("api_version").str(p.api_version);
        if (p.kind == config::provider_kind::anthropic)
            w.key("default_max_tokens").uint(p.default_max_tokens);
        w.key("connect_timeout").dur(p.connect_timeout);
        w.key("first_byte_timeout").dur(p.first_byte_timeout);
        w.key("idle_timeout").dur(p.idle_timeout);
        w.key("max_connections").uint(p.max_connections);
        w.key("ca_file").str(p.ca_file);
        w.key("tls_verify").boolean(p.tls_verify);
        w.key("max_response_bytes").uint(p.max_response_bytes);
        w.key("max_event_bytes").uint(p.max_event_bytes);
        w.key("responses")
            .str(p.kind == config::provider_kind::anthropic ||
                         p.responses == config::provider_config::responses_mode::translate
                     ? "translate"
                     : "native");
        w.close('}');
    }
    w.close('}');

    w.key("models").open('{');
    for (const auto& m : cfg.models) {
        w.key(m.name).open('{');
        w.key("targets").open('[');
        for (const auto& t : m.targets)
            w.open('{')
                .key("provider")
                .str(t.provider)
                .key("model")
                .str(t.model)
                .key("weight")
                .uint(t.weight)
                .close('}');
        w.close(']');
        w.key("fallbacks").strings(m.fallbacks);
        w.key("price");
        if (m.price) {
            w.open('{');
            w.key("input_per_mtok").num(m.price->input_per_mtok);
            w.key("output_per_mtok").num(m.price->output_per_mtok);
            if (m.price->cached_input_per_mtok)
                w.key("cached_input_per_mtok").num(*m.price->cached_input_per_mtok);
            w.close('}');
        } else {
            w.null();
        }
        w.close('}');
    }
    w.close('}');

    const auto& r = cfg.routing;
    w.key("routing").open('{');
    w.key("strategy")
        .str(r.strategy == config::routing_strategy::weighted     ? "weighted"
             : r.strategy == config::routing_strategy::least_busy ? "least_busy"
                                                                  : "lowest_latency");
    w.key("retries").uint(r.retries);
    w.key("retry_on").strings(r.retry_on);
    w.key("cooldown_after_failures").uint(r.cooldown_after_failures);
    w.key("cooldown").dur(r.cooldown);
    w.key("on_client_disconnect")
        .str(r.on_client_disconnect == config::disconnect_mode::drain ? "drain" : "cancel");
    w.key("drain_limit").dur(r.drain_limit);
    w.close('}');

    w.key("keys").open('[');
    for (const auto& k : cfg.keys) {
        w.open('{');
        w.key("id").str(k.id);
        w.key("key").str(hidden);
        w.key("models");
        if (k.models)
            w.strings(*k.models);
        else
            w.null();
        w.key("limits").open('{');
        w.key("rpm").opt_uint(k.limits.rpm);
        w.key("tpm").opt_uint(k.limits.tpm);
        w.key("concurrency").opt_uint(k.limits.concurrency);
        w.close('}');
        w.key("budget");
        if (k.budget) {
            w.open('{');
            w.key("tokens").opt_uint(k.budget->tokens);
            w.key("usd");
            if (k.budget->usd)
                w.num(*k.budget->usd);
            else
                w.null();
            w.key("period").str(k.budget->period == config::budget_period::day     ? "day"
                                : k.budget->period == config::budget_period::month ? "month"
                                                                                   : "total");
            w.close('}');
        } else {
            w.null();
        }
        w.close('}');
    }
    w.close(']');

    w.key("usage").open('{');
    w.key("database").str(redact_url(cfg.usage.database));
    w.key("jsonl").str(cfg.usage.jsonl);
    w.key("spill_file").str(cfg.usage.spill_file);
    w.close('}');

    const auto& st = cfg.state;
    w.key("state").open('{');
    w.key("backend").str(st.backend == config::state_backend::redis ? "redis" : "memory");
    w.key("redis_url").str(redact_url(st.redis_url));
    w.key("fail_mode").str(st.on_failure == config::fail_mode::open ? "open" : "closed");
    w.key("timeout").dur(st.timeout);
    w.key("key_prefix").str(st.key_prefix);
    w.key("lease").dur(st.lease);
    w.key("pool_size").uint(st.pool_size);
    w.key("tls_ca_file").str(st.tls_ca_file);
    w.close('}');

    w.key("policies").strings(chain);
    w.close('}');
    return w.take();
}

}  // namespace tollgate::core
