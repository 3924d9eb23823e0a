#include "gateway/core/config_json.hpp"

#include "gateway/core/json_writer.hpp"

namespace tollgate::core {

namespace {

constexpr const char* hidden = "***";

void duration(json_writer& w, config::duration d) {
    const auto ms = d.count();
    w.string(ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms");
}

void strings(json_writer& w, const std::vector<std::string>& v) {
    w.begin_array();
    for (const auto& s : v) w.string(s);
    w.end_array();
}

template <class T>
void optional_uint(json_writer& w, const std::optional<T>& v) {
    if (v)
        w.uinteger(*v);
    else
        w.null();
}

// A secret: "***" when set, null when not.
void secret(json_writer& w, const std::string& value) {
    if (value.empty())
        w.null();
    else
        w.string(hidden);
}

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
    json_writer w;
    w.begin_object();

    const auto& s = cfg.server;
    w.key("server").begin_object();
    w.key("listen").begin_array();
    for (const auto& a : s.listen) w.string(listen_text(a));
    w.end_array();
    w.key("threads").uinteger(s.threads);
    w.key("max_request_bytes").uinteger(s.max_request_bytes);
    w.key("max_header_bytes").uinteger(s.max_header_bytes);
    duration(w.key("header_timeout"), s.header_timeout);
    duration(w.key("idle_timeout"), s.idle_timeout);
    duration(w.key("drain_timeout"), s.drain_timeout);
    duration(w.key("write_timeout"), s.write_timeout);
    w.key("max_connections").uinteger(s.max_connections);
    w.key("max_pipelined").uinteger(s.max_pipelined);
    w.key("access_log").string(s.access_log);
    w.key("tls");
    if (s.tls)
        w.begin_object().key("cert").string(s.tls->cert).key("key").string(s.tls->key).end_object();
    else
        w.null();
    w.end_object();

    w.key("admin").begin_object();
    w.key("listen");
    if (cfg.admin.listen)
        w.string(listen_text(*cfg.admin.listen));
    else
        w.null();
    secret(w.key("token"), cfg.admin.token);
    w.end_object();

    w.key("providers").begin_object();
    for (const auto& p : cfg.providers) {
        w.key(p.name).begin_object();
        w.key("kind").string(config::kind_name(p.kind));
        w.key("base_url").string(redact_url(p.base_url));
        secret(w.key("api_key"), p.api_key);
        if (p.kind == config::provider_kind::azure) w.key("api_version").string(p.api_version);
        if (p.kind == config::provider_kind::anthropic)
            w.key("default_max_tokens").uinteger(p.default_max_tokens);
        duration(w.key("connect_timeout"), p.connect_timeout);
        duration(w.key("first_byte_timeout"), p.first_byte_timeout);
        duration(w.key("idle_timeout"), p.idle_timeout);
        w.key("max_connections").uinteger(p.max_connections);
        w.key("ca_file").string(p.ca_file);
        w.key("tls_verify").boolean(p.tls_verify);
        w.key("max_response_bytes").uinteger(p.max_response_bytes);
        w.key("max_event_bytes").uinteger(p.max_event_bytes);
        w.key("responses")
            .string(p.kind == config::provider_kind::anthropic ||
                            p.responses == config::provider_config::responses_mode::translate
                        ? "translate"
                        : "native");
        w.end_object();
    }
    w.end_object();

    w.key("models").begin_object();
    for (const auto& m : cfg.models) {
        w.key(m.name).begin_object();
        w.key("targets").begin_array();
        for (const auto& t : m.targets)
            w.begin_object()
                .key("provider")
                .string(t.provider)
                .key("model")
                .string(t.model)
                .key("weight")
                .uinteger(t.weight)
                .end_object();
        w.end_array();
        strings(w.key("fallbacks"), m.fallbacks);
        w.key("price");
        if (m.price) {
            w.begin_object();
            w.key("input_per_mtok").number(m.price->input_per_mtok);
            w.key("output_per_mtok").number(m.price->output_per_mtok);
            if (m.price->cached_input_per_mtok)
                w.key("cached_input_per_mtok").number(*m.price->cached_input_per_mtok);
            w.end_object();
        } else {
            w.null();
        }
        w.end_object();
    }
    w.end_object();

    const auto& r = cfg.routing;
    w.key("routing").begin_object();
    w.key("strategy")
        .string(r.strategy == config::routing_strategy::weighted     ? "weighted"
                : r.strategy == config::routing_strategy::least_busy ? "least_busy"
                                                                     : "lowest_latency");
    w.key("retries").uinteger(r.retries);
    strings(w.key("retry_on"), r.retry_on);
    w.key("cooldown_after_failures").uinteger(r.cooldown_after_failures);
    duration(w.key("cooldown"), r.cooldown);
    w.key("on_client_disconnect")
        .string(r.on_client_disconnect == config::disconnect_mode::drain ? "drain" : "cancel");
    duration(w.key("drain_limit"), r.drain_limit);
    w.end_object();

    w.key("keys").begin_array();
    for (const auto& k : cfg.keys) {
        w.begin_object();
        w.key("id").string(k.id);
        w.key("key").string(hidden);
        w.key("models");
        if (k.models)
            strings(w, *k.models);
        else
            w.null();
        w.key("limits").begin_object();
        optional_uint(w.key("rpm"), k.limits.rpm);
        optional_uint(w.key("tpm"), k.limits.tpm);
        optional_uint(w.key("concurrency"), k.limits.concurrency);
        w.end_object();
        w.key("budget");
        if (k.budget) {
            w.begin_object();
            optional_uint(w.key("tokens"), k.budget->tokens);
            w.key("usd");
            if (k.budget->usd)
                w.number(*k.budget->usd);
            else
                w.null();
            w.key("period").string(config::budget_period_name(k.budget->period));
            w.end_object();
        } else {
            w.null();
        }
        w.end_object();
    }
    w.end_array();

    w.key("usage").begin_object();
    w.key("database").string(redact_url(cfg.usage.database));
    w.key("jsonl").string(cfg.usage.jsonl);
    w.key("spill_file").string(cfg.usage.spill_file);
    w.end_object();

    const auto& st = cfg.state;
    w.key("state").begin_object();
    w.key("backend").string(st.backend == config::state_backend::redis ? "redis" : "memory");
    w.key("redis_url").string(redact_url(st.redis_url));
    w.key("fail_mode").string(st.on_failure == config::fail_mode::open ? "open" : "closed");
    duration(w.key("timeout"), st.timeout);
    w.key("key_prefix").string(st.key_prefix);
    duration(w.key("lease"), st.lease);
    w.key("pool_size").uinteger(st.pool_size);
    w.key("tls_ca_file").string(st.tls_ca_file);
    w.end_object();

    strings(w.key("policies"), chain);
    w.end_object();
    return w.take();
}

}  // namespace tollgate::core
