#include "config/loader.hpp"

#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace tollgate::config {

retry_rule retry_rule::from(const std::vector<std::string>& retry_on) {
    retry_rule r;
    for (const auto& v : retry_on) {
        if (v == "connect_error") {
            r.connect_error = true;
        } else if (v == "timeout") {
            r.timeout = true;
        } else if (int s = 0;
                   std::from_chars(v.data(), v.data() + v.size(), s).ptr == v.data() + v.size() &&
                   s >= 400 && s < 600) {
            r.statuses.set(static_cast<std::size_t>(s - 400));
        }
    }
    return r;
}

std::string config_error::text() const {
    if (line > 0) return "line " + std::to_string(line) + ": " + message;
    return message;
}

std::optional<std::string> process_env(std::string_view name) {
    const std::string n(name);
    if (const char* v = std::getenv(n.c_str())) return std::string(v);
    return std::nullopt;
}

namespace {

template <class T>
std::optional<T> parse_number(std::string_view s) {
    T v{};
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace

std::optional<duration> parse_duration(std::string_view s) {
    struct unit {
        std::string_view suffix;
        std::int64_t ms;
    };
    // "ms" before "m" and "s".
    static constexpr unit units[] = {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}};
    for (const auto& u : units) {
        if (s.size() > u.suffix.size() && s.ends_with(u.suffix)) {
            auto n = parse_number<std::int64_t>(s.substr(0, s.size() - u.suffix.size()));
            if (!n || *n < 0 || *n > 365LL * 24 * 3600 * 1000 / u.ms) return std::nullopt;
            return duration(*n * u.ms);
        }
    }
    return std::nullopt;
}

std::optional<std::size_t> parse_size(std::string_view s) {
    struct unit {
        std::string_view suffix;
        std::size_t mult;
    };
    static constexpr unit units[] = {
        {"KiB", 1u << 10}, {"MiB", 1u << 20}, {"GiB", 1u << 30}, {"B", 1}};
    for (const auto& u : units) {
        if (s.size() > u.suffix.size() && s.ends_with(u.suffix)) {
            auto n = parse_number<std::size_t>(s.substr(0, s.size() - u.suffix.size()));
            if (!n || *n > (std::size_t{1} << 40) / u.mult) return std::nullopt;
            return *n * u.mult;
        }
    }
    return parse_number<std::size_t>(s);
}

std::optional<listen_address> parse_listen(std::string_view s) {
    listen_address a;
    std::string_view port;
    if (s.starts_with('[')) {
        auto close = s.find(']');
        if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
            return std::nullopt;
        a.host = std::string(s.substr(1, close - 1));
        port = s.substr(close + 2);
    } else {
        auto colon = s.rfind(':');
        if (colon == std::string_view::npos || colon == 0) return std::nullopt;
        a.host = std::string(s.substr(0, colon));
        port = s.substr(colon + 1);
    }
    auto p = parse_number<std::uint32_t>(port);
    if (!p || *p > 65535) return std::nullopt;
    a.port = static_cast<std::uint16_t>(*p);
    return a;
}

const std::vector<config_section>& config_sections() {
    // The one list of what each mapping may hold: the reader checks against it, the
    // JSON Schema test (config/tollgate.schema.json) and the documentation test compare
    // with it. `anchor`: the section of docs/configuration.md that describes it.
    static const std::vector<config_section> sections = {
        {"",
         "top-level-keys",
         {"server", "admin", "providers", "models", "routing", "keys", "usage", "state",
          "policies"}},
        {"server",
         "server",
         {"listen", "threads", "max_request_bytes", "max_header_bytes", "header_timeout",
          "idle_timeout", "drain_timeout", "write_timeout", "max_connections", "max_pipelined",
          "access_log", "tls", "trusted_proxies"}},
        {"server.tls", "server", {"cert", "key"}},
        {"admin", "admin", {"listen", "token"}},
        {"providers.*",
         "providers",
         {"kind", "base_url", "api_key", "api_version", "default_max_tokens", "connect_timeout",
          "first_byte_timeout", "idle_timeout", "max_connections", "ca_file", "tls_verify",
          "max_response_bytes", "max_event_bytes", "responses"}},
        {"models.*", "models", {"targets", "fallbacks", "price"}},
        {"models.*.targets[]", "models", {"provider", "model", "weight"}},
        {"models.*.price",
         "models",
         {"input_per_mtok", "output_per_mtok", "cached_input_per_mtok"}},
        {"routing",
         "routing",
         {"strategy", "retries", "retry_on", "cooldown_after_failures", "cooldown",
          "on_client_disconnect", "drain_limit"}},
        {"keys[]",
         "keys",
         {"id", "key", "key_sha256", "models", "limits", "budget", "allowed_cidrs"}},
        {"keys[].limits", "keys", {"rpm", "tpm", "concurrency"}},
        {"keys[].budget", "keys", {"tokens", "usd", "period"}},
        {"usage", "usage", {"database", "jsonl", "spill_file"}},
        {"state",
         "state",
         {"backend", "redis_url", "fail_mode", "timeout", "key_prefix", "lease", "pool_size",
          "tls_ca_file"}},
    };
    return sections;
}

const config_section& config_section_for(std::string_view path) {
    for (const auto& s : config_sections())
        if (s.path == path) return s;
    throw std::logic_error("no config section " + std::string(path));
}

namespace {

// Walks the YAML tree, collecting every error with its line.
class reader {
  public:
    reader(std::vector<config_error>& errors, const env_lookup& env) : errors_(errors), env_(env) {}
    // Values taken literally, without ${NAME} substitution (admin API bodies).
    void literal() noexcept { literal_ = true; }

    void error(const YAML::Node& n, std::string message) {
        const int line = n.IsDefined() && n.Mark().line >= 0 ? n.Mark().line + 1 : 0;
        errors_.push_back({line, std::move(message)});
    }
    void error_at(int line, std::string message) { errors_.push_back({line, std::move(message)}); }

    // Reports keys of `map` that are not in its section (config_sections(), by `path`),
    // naming the documentation section. Returns false if `map` is not a map.
    // `also`: more keys allowed (the top level: the policies' own sections).
    bool check_map(const YAML::Node& map, std::string_view where, std::string_view path,
                   const std::vector<std::string>& also = {}) {
        if (!map.IsMap()) {
            error(map, std::string(where) + ": expected a mapping");
            return false;
        }
        const auto& section = config_section_for(path);
        for (const auto& kv : map) {
            const auto key = kv.first.Scalar();
            if (std::find(section.keys.begin(), section.keys.end(), key) == section.keys.end() &&
                std::find(also.begin(), also.end(), key) == also.end())
                error(kv.first, "unknown key '" + key + "' in " + std::string(where) +
                                    " (see docs/configuration.md#" + std::string(section.anchor) +
                                    ")");
        }
        return true;
    }
    // The admin API's key bodies: not the config file, no documentation section.
    bool check_body(const YAML::Node& map, std::initializer_list<std::string_view> allowed) {
        if (!map.IsMap()) {
            error(map, "the body: expected a mapping");
            return false;
        }
        for (const auto& kv : map) {
            const auto key = kv.first.Scalar();
            if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
                error(kv.first, "unknown key '" + key + "' in the body");
        }
        return true;
    }

    // A scalar with ${NAME} replaced from the environment.
    std::optional<std::string> string(const YAML::Node& n, std::string_view what) {
        if (!n.IsScalar()) {
            error(n, std::string(what) + ": expected a scalar value");
            return std::nullopt;
        }
        const std::string& raw = n.Scalar();
        if (literal_) return raw;
        std::string out;
        out.reserve(raw.size());
        std::size_t i = 0;
        while (i < raw.size()) {
            auto start = raw.find("${", i);
            if (start == std::string::npos) {
                out.append(raw, i, std::string::npos);
                break;
            }
            out.append(raw, i, start - i);
            auto end = raw.find('}', start + 2);
            if (end == std::string::npos) {
                error(n, std::string(what) + ": unterminated ${ in value");
                return std::nullopt;
            }
            const std::string name = raw.substr(start + 2, end - start - 2);
            const bool valid = !name.empty() &&
                               !std::isdigit(static_cast<unsigned char>(name[0])) &&
                               std::all_of(name.begin(), name.end(), [](char c) {
                                   return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                               });
            if (!valid) {
                error(n, std::string(what) + ": bad environment variable name '" + name + "'");
                return std::nullopt;
            }
            auto value = env_(name);
            if (!value) {
                error(n, std::string(what) + ": environment variable " + name + " is not set");
                return std::nullopt;
            }
            out += *value;
            i = end + 1;
        }
        return out;
    }

    // False when the node is absent or could not be read (the error is already reported).
    bool read_string(const YAML::Node& n, std::string_view what, std::string& out) {
        if (!n.IsDefined()) return false;
        auto s = string(n, what);
        if (!s) return false;
        out = std::move(*s);
        return true;
    }

    template <class T>
    void read_uint(const YAML::Node& n, std::string_view what, T& out, T min = 0,
                   T max = std::numeric_limits<T>::max()) {
        if (!n.IsDefined()) return;
        auto s = string(n, what);
        if (!s) return;
        auto v = parse_number<std::uint64_t>(*s);
        if (!v || *v < min || *v > max) {
            error(n, std::string(what) + ": expected an integer from " + std::to_string(min) +
                         " to " + std::to_string(max) + ", got '" + *s + "'");
            return;
        }
        out = static_cast<T>(*v);
    }

    template <class T>
    void read_opt_uint(const YAML::Node& n, std::string_view what, std::optional<T>& out) {
        if (!n.IsDefined()) return;
        T v{};
        const auto before = errors_.size();
        read_uint(n, what, v);
        if (errors_.size() == before) out = v;
    }

    void read_double(const YAML::Node& n, std::string_view what, double& out) {
        if (!n.IsDefined()) return;
        auto s = string(n, what);
        if (!s) return;
        char* end = nullptr;
        const double v = std::strtod(s->c_str(), &end);
        if (s->empty() || end != s->c_str() + s->size() || !(v >= 0) || v > 1e12) {
            error(n, std::string(what) + ": expected a non-negative number, got '" + *s + "'");
            return;
        }
        out = v;
    }

    void read_bool(const YAML::Node& n, std::string_view what, bool& out) {
        if (!n.IsDefined()) return;
        auto s = string(n, what);
        if (!s) return;
        if (*s == "true" || *s == "yes" || *s == "on")
            out = true;
        else if (*s == "false" || *s == "no" || *s == "off")
            out = false;
        else
            error(n, std::string(what) + ": expected true or false, got '" + *s + "'");
    }

    void read_duration(const YAML::Node& n, std::string_view what, duration& out) {
        if (!n.IsDefined()) return;
        auto s = string(n, what);
        if (!s) return;
        if (auto d = parse_duration(*s))
            out = *d;
        else
            error(n, std::string(what) + ": expected a duration like 500ms, 10s, 5m, 1h; got '" +
                         *s + "'");
    }

    void read_size(const YAML::Node& n, std::string_view what, std::size_t& out) {
        if (!n.IsDefined()) return;
        auto s = string(n, what);
        if (!s) return;
        if (auto v = parse_size(*s); v && *v > 0)
            out = *v;
        else
            error(n, std::string(what) + ": expected a size like 65536, 64KiB, 8MiB; got '" + *s +
                         "'");
    }

    template <class E>
    void read_enum(const YAML::Node& n, std::string_view what, E& out,
                   std::initializer_list<std::pair<std::string_view, E>> values) {
        if (!n.IsDefined()) return;
        auto s = string(n, what);
        if (!s) return;
        std::string names;
        for (const auto& [name, v] : values) {
            if (*s == name) {
                out = v;
                return;
            }
            names += names.empty() ? "" : " | ";
            names += name;
        }
        error(n, std::string(what) + ": expected " + names + ", got '" + *s + "'");
    }

    std::vector<std::string> read_string_list(const YAML::Node& n, std::string_view what) {
        std::vector<std::string> out;
        if (!n.IsDefined()) return out;
        if (!n.IsSequence()) {
            error(n, std::string(what) + ": expected a list");
            return out;
        }
        for (const auto& item : n)
            if (auto s = string(item, what)) out.push_back(std::move(*s));
        return out;
    }

    // A list of CIDR ranges (or single addresses).
    std::vector<cidr> read_cidr_list(const YAML::Node& n, std::string_view what) {
        std::vector<cidr> out;
        if (!n.IsDefined() || n.IsNull()) return out;
        if (!n.IsSequence()) {
            error(n, std::string(what) + ": expected a list of addresses or CIDR ranges");
            return out;
        }
        for (const auto& item : n) {
            const auto s = string(item, what);
            if (!s) continue;
            if (auto c = parse_cidr(*s))
                out.push_back(std::move(*c));
            else
                error(item, std::string(what) + ": '" + *s +
                                "' is not an address or CIDR range (10.0.0.0/8, 2001:db8::/32)");
        }
        return out;
    }

    // Replaces every scalar under `n` by its ${NAME}-substituted value (a policy's own
    // section, which the policy reads later without the environment).
    void substitute_all(YAML::Node n, const std::string& what) {
        if (n.IsScalar()) {
            if (auto v = string(n, what)) n = *v;
        } else if (n.IsSequence()) {
            for (auto item : n) substitute_all(item, what);
        } else if (n.IsMap()) {
            for (auto kv : n) substitute_all(kv.second, what + "." + kv.first.Scalar());
        }
    }

    std::optional<listen_address> read_listen(const YAML::Node& n, std::string_view what) {
        auto s = string(n, what);
        if (!s) return std::nullopt;
        auto a = parse_listen(*s);
        if (!a) error(n, std::string(what) + ": expected host:port, got '" + *s + "'");
        return a;
    }

  private:
    std::vector<config_error>& errors_;
    const env_lookup& env_;
    bool literal_ = false;
};

void read_server(reader& r, const YAML::Node& n, server_config& s) {
    if (!n.IsDefined()) return;
    if (!r.check_map(n, "server", "server")) return;
    if (const auto l = n["listen"]; l.IsDefined()) {
        s.listen.clear();
        if (l.IsScalar()) {
            if (auto a = r.read_listen(l, "server.listen")) s.listen.push_back(*a);
        } else if (l.IsSequence() && l.size() > 0) {
            for (const auto& item : l)
                if (auto a = r.read_listen(item, "server.listen")) s.listen.push_back(*a);
        } else {
            r.error(l, "server.listen: expected a list of host:port");
        }
    }
    r.read_uint(n["threads"], "server.threads", s.threads, 0u, 256u);
    r.read_size(n["max_request_bytes"], "server.max_request_bytes", s.max_request_bytes);
    r.read_size(n["max_header_bytes"], "server.max_header_bytes", s.max_header_bytes);
    r.read_duration(n["header_timeout"], "server.header_timeout", s.header_timeout);
    r.read_duration(n["idle_timeout"], "server.idle_timeout", s.idle_timeout);
    r.read_duration(n["drain_timeout"], "server.drain_timeout", s.drain_timeout);
    r.read_duration(n["write_timeout"], "server.write_timeout", s.write_timeout);
    r.read_uint(n["max_connections"], "server.max_connections", s.max_connections, std::size_t{1},
                std::size_t{10'000'000});
    r.read_uint(n["max_pipelined"], "server.max_pipelined", s.max_pipelined, std::size_t{1},
                std::size_t{1024});
    r.read_string(n["access_log"], "server.access_log", s.access_log);
    if (s.access_log.empty()) r.error(n["access_log"], "server.access_log: must not be empty");
    if (const auto t = n["tls"]; t.IsDefined() && r.check_map(t, "server.tls", "server.tls")) {
        tls_files f;
        r.read_string(t["cert"], "server.tls.cert", f.cert);
        r.read_string(t["key"], "server.tls.key", f.key);
        if (f.cert.empty() || f.key.empty())
            r.error(t, "server.tls: both cert and key are required");
        s.tls = f;
    }
    s.trusted_proxies = r.read_cidr_list(n["trusted_proxies"], "server.trusted_proxies");
    for (auto [d, name] : {std::pair{s.header_timeout, "header_timeout"},
                           {s.idle_timeout, "idle_timeout"},
                           {s.write_timeout, "write_timeout"}})
        if (d.count() == 0) r.error(n[name], std::string("server.") + name + ": must be > 0");
}

void read_admin(reader& r, const YAML::Node& n, admin_config& a) {
    if (!n.IsDefined()) return;
    if (!r.check_map(n, "admin", "admin")) return;
    if (n["listen"].IsDefined()) a.listen = r.read_listen(n["listen"], "admin.listen");
    if (r.read_string(n["token"], "admin.token", a.token) && a.token.empty())
        r.error(n["token"], "admin.token: must not be empty");
}

bool parse_base_url(provider_config& p) {
    std::string_view u = p.base_url;
    if (u.starts_with("https://")) {
        p.tls = true;
        u.remove_prefix(8);
    } else if (u.starts_with("http://")) {
        p.tls = false;
        u.remove_prefix(7);
    } else {
        return false;
    }
    const auto slash = u.find('/');
    std::string_view authority = u.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? "" : u.substr(slash);
    if (authority.empty() || authority.find_first_of("@?#") != std::string_view::npos ||
        path.find_first_of("?#") != std::string_view::npos)
        return false;
    std::uint16_t port = p.tls ? 443 : 80;
    std::string host;
    if (authority.starts_with('[')) {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return false;
        host = std::string(authority.substr(1, close - 1));
        authority.remove_prefix(close + 1);
        if (!authority.empty()) {
            if (authority[0] != ':') return false;
            auto a = parse_listen("x" + std::string(authority));
            if (!a) return false;
            port = a->port;
        }
    } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
        auto a = parse_listen(authority);
        if (!a) return false;
        host = a->host;
        port = a->port;
    } else {
        host = std::string(authority);
    }
    if (host.empty() || port == 0) return false;
    for (char c : host)
        if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '\\') return false;
    while (path.ends_with('/')) path.remove_suffix(1);
    p.host = std::move(host);
    p.port = port;
    p.base_path = std::string(path);
    return true;
}

void read_providers(reader& r, const YAML::Node& n, std::vector<provider_config>& out) {
    if (!n.IsDefined()) return;
    if (!n.IsMap()) {
        r.error(n, "providers: expected a mapping of provider names");
        return;
    }
    for (const auto& kv : n) {
        provider_config p;
        p.name = kv.first.Scalar();
        const auto where = "providers." + p.name;
        const auto& v = kv.second;
        if (!r.check_map(v, where, "providers.*")) continue;
        r.read_enum(v["kind"], where + ".kind", p.kind,
                    {{"openai", provider_kind::openai},
                     {"azure", provider_kind::azure},
                     {"anthropic", provider_kind::anthropic}});
        if (!v["base_url"].IsDefined()) {
            r.error(v, where + ": base_url is required");
        } else {
            r.read_string(v["base_url"], where + ".base_url", p.base_url);
            if (!p.base_url.empty() && !parse_base_url(p))
                r.error(v["base_url"], where + ".base_url: expected http(s)://host[:port][/path]");
        }
        r.read_string(v["api_key"], where + ".api_key", p.api_key);
        for (char c : p.api_key)
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
                r.error(v["api_key"], where + ".api_key: contains a control character");
                break;
            }
        r.read_string(v["api_version"], where + ".api_version", p.api_version);
        if (p.kind == provider_kind::azure && p.api_version.empty())
            r.error(v, where + ": api_version is required for kind azure");
        r.read_uint(v["default_max_tokens"], where + ".default_max_tokens", p.default_max_tokens,
                    1u, 10'000'000u);
        r.read_duration(v["connect_timeout"], where + ".connect_timeout", p.connect_timeout);
        r.read_duration(v["first_byte_timeout"], where + ".first_byte_timeout",
                        p.first_byte_timeout);
        r.read_duration(v["idle_timeout"], where + ".idle_timeout", p.idle_timeout);
        r.read_uint(v["max_connections"], where + ".max_connections", p.max_connections,
                    std::size_t{1}, std::size_t{1'000'000});
        r.read_string(v["ca_file"], where + ".ca_file", p.ca_file);
        r.read_bool(v["tls_verify"], where + ".tls_verify", p.tls_verify);
        r.read_size(v["max_response_bytes"], where + ".max_response_bytes", p.max_response_bytes);
        r.read_size(v["max_event_bytes"], where + ".max_event_bytes", p.max_event_bytes);
        r.read_enum(v["responses"], where + ".responses", p.responses,
                    {{"native", provider_config::responses_mode::native},
                     {"translate", provider_config::responses_mode::translate}});
        if (p.kind == provider_kind::anthropic && v["responses"].IsDefined() &&
            p.responses == provider_config::responses_mode::native)
            r.error(v["responses"], where +
                                        ".responses: an anthropic provider has no Responses API; "
                                        "use translate (the default for it)");
        if (p.kind == provider_kind::anthropic)
            p.responses = provider_config::responses_mode::translate;
        for (auto [d, name] : {std::pair{p.connect_timeout, "connect_timeout"},
                               {p.first_byte_timeout, "first_byte_timeout"},
                               {p.idle_timeout, "idle_timeout"}})
            if (d.count() == 0) r.error(v[name], where + "." + name + ": must be > 0");
        out.push_back(std::move(p));
    }
}

void read_models(reader& r, const YAML::Node& n, std::vector<model_config>& out) {
    if (!n.IsDefined()) return;
    if (!n.IsMap()) {
        r.error(n, "models: expected a mapping of model names");
        return;
    }
    for (const auto& kv : n) {
        model_config m;
        m.name = kv.first.Scalar();
        const auto where = "models." + m.name;
        const auto& v = kv.second;
        if (!r.check_map(v, where, "models.*")) continue;
        const auto targets = v["targets"];
        if (!targets.IsSequence() || targets.size() == 0) {
            r.error(targets.IsDefined() ? targets : v,
                    where + ".targets: expected a non-empty list");
        } else {
            for (const auto& t : targets) {
                target_config tc;
                if (!r.check_map(t, where + ".targets[]", "models.*.targets[]")) continue;
                r.read_string(t["provider"], where + ".targets[].provider", tc.provider);
                r.read_string(t["model"], where + ".targets[].model", tc.model);
                r.read_uint(t["weight"], where + ".targets[].weight", tc.weight, 0u, 1'000'000u);
                if (tc.provider.empty()) r.error(t, where + ".targets[]: provider is required");
                if (tc.model.empty()) r.error(t, where + ".targets[]: model is required");
                m.targets.push_back(std::move(tc));
            }
        }
        m.fallbacks = r.read_string_list(v["fallbacks"], where + ".fallbacks");
        if (const auto p = v["price"]; p.IsDefined()) {
            price_config pc;
            if (r.check_map(p, where + ".price", "models.*.price")) {
                r.read_double(p["input_per_mtok"], where + ".price.input_per_mtok",
                              pc.input_per_mtok);
                r.read_double(p["output_per_mtok"], where + ".price.output_per_mtok",
                              pc.output_per_mtok);
                if (p["cached_input_per_mtok"].IsDefined()) {
                    double c = 0;
                    r.read_double(p["cached_input_per_mtok"],
                                  where + ".price.cached_input_per_mtok", c);
                    pc.cached_input_per_mtok = c;
                }
            }
            m.price = pc;
        }
        out.push_back(std::move(m));
    }
}

void read_routing(reader& r, const YAML::Node& n, routing_config& c) {
    if (!n.IsDefined()) return;
    if (!r.check_map(n, "routing", "routing")) return;
    r.read_enum(n["strategy"], "routing.strategy", c.strategy,
                {{"weighted", routing_strategy::weighted},
                 {"least_busy", routing_strategy::least_busy},
                 {"lowest_latency", routing_strategy::lowest_latency}});
    r.read_uint(n["retries"], "routing.retries", c.retries, 0u, 10u);
    if (n["retry_on"].IsDefined()) {
        c.retry_on = r.read_string_list(n["retry_on"], "routing.retry_on");
        for (const auto& v : c.retry_on) {
            const bool status = v.size() == 3 && std::all_of(v.begin(), v.end(), ::isdigit) &&
                                v[0] >= '4' && v[0] <= '5';
            if (!status && v != "connect_error" && v != "timeout")
                r.error(n["retry_on"],
                        "routing.retry_on: expected connect_error, timeout or a "
                        "4xx/5xx status, got '" +
                            v + "'");
        }
        c.retry = retry_rule::from(c.retry_on);
    }
    r.read_uint(n["cooldown_after_failures"], "routing.cooldown_after_failures",
                c.cooldown_after_failures, 1u, 1000u);
    r.read_duration(n["cooldown"], "routing.cooldown", c.cooldown);
    r.read_enum(n["on_client_disconnect"], "routing.on_client_disconnect", c.on_client_disconnect,
                {{"cancel", disconnect_mode::cancel}, {"drain", disconnect_mode::drain}});
    r.read_duration(n["drain_limit"], "routing.drain_limit", c.drain_limit);
}

// A key's models, limits and budget (shared by `keys:` and the admin API).
void read_key_terms(reader& r, const YAML::Node& v, const std::string& where, key_config& k) {
    if (v["models"].IsDefined()) k.models = r.read_string_list(v["models"], where + ".models");
    if (const auto l = v["limits"];
        l.IsDefined() && r.check_map(l, where + ".limits", "keys[].limits")) {
        r.read_opt_uint(l["rpm"], where + ".limits.rpm", k.limits.rpm);
        r.read_opt_uint(l["tpm"], where + ".limits.tpm", k.limits.tpm);
        r.read_opt_uint(l["concurrency"], where + ".limits.concurrency", k.limits.concurrency);
    }
    if (const auto b = v["budget"];
        b.IsDefined() && r.check_map(b, where + ".budget", "keys[].budget")) {
        budget_config bc;
        r.read_opt_uint(b["tokens"], where + ".budget.tokens", bc.tokens);
        if (b["usd"].IsDefined()) {
            double usd = 0;
            r.read_double(b["usd"], where + ".budget.usd", usd);
            bc.usd = usd;
        }
        r.read_enum(b["period"], where + ".budget.period", bc.period,
                    {{"day", budget_period::day},
                     {"month", budget_period::month},
                     {"total", budget_period::total}});
        k.budget = bc;
    }
    if (const auto c = v["allowed_cidrs"]; c.IsDefined())
        k.allowed_cidrs = r.read_cidr_list(c, where + ".allowed_cidrs");
}

void read_keys(reader& r, const YAML::Node& n, std::vector<key_config>& out) {
    if (!n.IsDefined()) return;
    if (!n.IsSequence()) {
        r.error(n, "keys: expected a list");
        return;
    }
    for (const auto& v : n) {
        key_config k;
        if (!r.check_map(v, "keys[]", "keys[]")) continue;
        r.read_string(v["id"], "keys[].id", k.id);
        if (k.id.empty()) r.error(v, "keys[]: id is required");
        const auto where = "keys[" + k.id + "]";
        const bool has_key = v["key"].IsDefined(), has_hash = v["key_sha256"].IsDefined();
        if (has_key == has_hash) {
            r.error(v, where + ": exactly one of key or key_sha256 is required");
        } else if (has_key) {
            // The plain key lives only in this scope: it is hashed and dropped.
            std::string plain;
            if (r.read_string(v["key"], where + ".key", plain)) {
                if (plain.empty())
                    r.error(v["key"], where + ".key: must not be empty");
                else
                    k.key_sha256 = sha256_hex(plain);
            }
        } else {
            r.read_string(v["key_sha256"], where + ".key_sha256", k.key_sha256);
            std::transform(k.key_sha256.begin(), k.key_sha256.end(), k.key_sha256.begin(),
                           ::tolower);
            if (k.key_sha256.size() != 64 ||
                !std::all_of(k.key_sha256.begin(), k.key_sha256.end(), ::isxdigit))
                r.error(v["key_sha256"], where + ".key_sha256: expected 64 hex digits");
        }
        read_key_terms(r, v, where, k);
        out.push_back(std::move(k));
    }
}

void read_usage(reader& r, const YAML::Node& n, usage_config& u) {
    if (!n.IsDefined()) return;
    if (!r.check_map(n, "usage", "usage")) return;
    r.read_string(n["database"], "usage.database", u.database);
    r.read_string(n["jsonl"], "usage.jsonl", u.jsonl);
    r.read_string(n["spill_file"], "usage.spill_file", u.spill_file);
    if (u.database.empty()) r.error(n["database"], "usage.database: must not be empty");
}

void read_state(reader& r, const YAML::Node& n, state_config& s) {
    if (!n.IsDefined()) return;
    if (!r.check_map(n, "state", "state")) return;
    r.read_enum(n["backend"], "state.backend", s.backend,
                {{"memory", state_backend::memory}, {"redis", state_backend::redis}});
    r.read_string(n["redis_url"], "state.redis_url", s.redis_url);
    r.read_enum(n["fail_mode"], "state.fail_mode", s.on_failure,
                {{"closed", fail_mode::closed}, {"open", fail_mode::open}});
    r.read_duration(n["timeout"], "state.timeout", s.timeout);
    r.read_string(n["key_prefix"], "state.key_prefix", s.key_prefix);
    r.read_duration(n["lease"], "state.lease", s.lease);
    r.read_string(n["tls_ca_file"], "state.tls_ca_file", s.tls_ca_file);
    r.read_uint(n["pool_size"], "state.pool_size", s.pool_size, 1u, 64u);
    if (s.timeout.count() <= 0) r.error(n["timeout"], "state.timeout: must be more than 0");
    if (s.lease < std::chrono::seconds(3)) r.error(n["lease"], "state.lease: must be at least 3s");
    if (s.backend == state_backend::redis && !s.redis_url.starts_with("redis://") &&
        !s.redis_url.starts_with("rediss://"))
        r.error(n["redis_url"],
                "state.redis_url: expected redis://[[user]:password@]host[:port][/db] or "
                "rediss://... (TLS)");
}

// Cross-references between sections: names that must exist, ids that must be unique.
void check_references(reader& r, const YAML::Node& root, gateway_config& c) {
    std::set<std::string> names;
    for (const auto& m : c.models) {
        for (const auto& t : m.targets)
            if (!t.provider.empty() && !c.find_provider(t.provider))
                r.error(root["models"][m.name],
                        "models." + m.name + ": unknown provider '" + t.provider + "'");
        if (!m.targets.empty() &&
            std::all_of(m.targets.begin(), m.targets.end(), [](auto& t) { return t.weight == 0; }))
            r.error(root["models"][m.name], "models." + m.name + ": every target has weight 0");
        for (const auto& f : m.fallbacks)
            if (f == m.name || !c.find_model(f))
                r.error(root["models"][m.name]["fallbacks"],
                        "models." + m.name + ".fallbacks: unknown or self model '" + f + "'");
    }
    std::set<std::string> ids, hashes;
    std::size_t i = 0;
    for (const auto& k : c.keys) {
        const auto node = root["keys"][i++];
        if (!k.id.empty() && !ids.insert(k.id).second)
            r.error(node, "keys: duplicate id '" + k.id + "'");
        if (!k.key_sha256.empty() && !hashes.insert(k.key_sha256).second)
            r.error(node, "keys[" + k.id + "]: the same key is configured twice");
        if (k.models)
            for (const auto& m : *k.models)
                if (!c.find_model(m))
                    r.error(node["models"], "keys[" + k.id + "].models: unknown model '" + m + "'");
    }
}

}  // namespace

const provider_config* gateway_config::find_provider(std::string_view name) const {
    for (const auto& p : providers)
        if (p.name == name) return &p;
    return nullptr;
}

const model_config* gateway_config::find_model(std::string_view name) const {
    for (const auto& m : models)
        if (m.name == name) return &m;
    return nullptr;
}

load_result load_config_text(std::string_view yaml, std::string_view source_name,
                             const env_lookup& env) {
    load_result result;
    YAML::Node root;
    try {
        root = YAML::Load(std::string(yaml));
    } catch (const YAML::Exception& e) {
        result.errors.push_back({e.mark.line >= 0 ? e.mark.line + 1 : 0, e.msg});
        return result;
    }
    gateway_config c;
    c.source_path = std::string(source_name);
    reader r(result.errors, env);
    try {
        if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
        // A top-level key naming a policy listed in `policies:` (other than the built-in
        // sections) is that policy's own section.
        std::vector<std::string> own_sections;
        if (root.IsMap() && root["policies"].IsSequence())
            for (const auto& p : root["policies"])
                if (p.IsScalar()) {
                    const auto& builtin = config_section_for("").keys;
                    if (std::find(builtin.begin(), builtin.end(), p.Scalar()) == builtin.end())
                        own_sections.push_back(p.Scalar());
                }
        if (r.check_map(root, "the top level", "", own_sections)) {
            for (const auto& kv : root) {
                const auto name = kv.first.Scalar();
                if (std::find(own_sections.begin(), own_sections.end(), name) == own_sections.end())
                    continue;
                // In place (the tree is this load's own), so that lines stay with values.
                r.substitute_all(kv.second, name);
                c.policy_sections.emplace(
                    name, policy_section::make(name, kv.first.Mark().line + 1, &kv.second));
            }
            read_server(r, root["server"], c.server);
            read_admin(r, root["admin"], c.admin);
            read_providers(r, root["providers"], c.providers);
            read_models(r, root["models"], c.models);
            read_routing(r, root["routing"], c.routing);
            read_keys(r, root["keys"], c.keys);
            read_usage(r, root["usage"], c.usage);
            read_state(r, root["state"], c.state);
            if (root["policies"].IsDefined()) {
                c.policies = r.read_string_list(root["policies"], "policies");
                c.policies_line = root["policies"].Mark().line + 1;
            }
            check_references(r, root, c);
        }
    } catch (const YAML::Exception& e) {
        result.errors.push_back({e.mark.line >= 0 ? e.mark.line + 1 : 0, e.msg});
    }
    if (result.errors.empty()) result.config = std::move(c);
    return result;
}

key_patch_result parse_key_patch(std::string_view json) {
    key_patch_result result;
    auto& p = result.patch;
    // A JSON API takes JSON only: strict JSON first (simdjson), an object, no field twice.
    // Only then are the values read by the config file's own rules (through yaml-cpp, of
    // which JSON is a subset), so a key means the same here and in `keys:`.
    {
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        const simdjson::padded_string padded(json);
        if (const auto err = parser.parse(padded).get(doc)) {
            result.errors.push_back(
                {0, std::string("the body is not valid JSON: ") + simdjson::error_message(err)});
            return result;
        }
        simdjson::dom::object obj;
        if (doc.get(obj)) {
            result.errors.push_back({0, "the body must be a JSON object"});
            return result;
        }
        std::set<std::string_view> seen;
        for (const auto field : obj)
            if (!seen.insert(field.key).second) {
                result.errors.push_back(
                    {0, "field '" + std::string(field.key.substr(0, 100)) + "' given twice"});
                return result;
            }
    }
    YAML::Node v;
    try {
        v = YAML::Load(std::string(json));
    } catch (const YAML::Exception& e) {
        result.errors.push_back({0, "the body is not valid JSON: " + e.msg});
        return result;
    }
    const env_lookup none = [](std::string_view) { return std::optional<std::string>{}; };
    reader r(result.errors, none);
    r.literal();
    try {
        if (!r.check_body(v, {"id", "models", "limits", "budget", "allowed_cidrs"})) return result;
        if (v["id"].IsDefined()) {
            std::string id;
            if (r.read_string(v["id"], "id", id)) p.id = std::move(id);
        }
        YAML::Node terms(YAML::NodeType::Map);
        if (const auto m = v["models"]; m.IsDefined()) {
            p.has_models = true;
            if (!m.IsNull()) terms["models"] = m;
        }
        if (const auto l = v["limits"]; l.IsDefined()) {
            p.has_limits = true;
            if (!l.IsNull()) terms["limits"] = l;
        }
        if (const auto b = v["budget"]; b.IsDefined()) {
            p.has_budget = true;
            if (!b.IsNull()) terms["budget"] = b;
        }
        if (const auto c = v["allowed_cidrs"]; c.IsDefined()) {
            p.has_allowed_cidrs = true;
            if (!c.IsNull()) terms["allowed_cidrs"] = c;
        }
        read_key_terms(r, terms, "key", p.terms);
    } catch (const YAML::Exception& e) {
        result.errors.push_back({0, e.msg});
    }
    for (auto& e : result.errors) e.line = 0;  // a JSON body has no useful line numbers
    return result;
}

load_result load_config_file(const std::string& path, const env_lookup& env) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        load_result r;
        r.errors.push_back({0, "cannot read config file " + path});
        return r;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return load_config_text(ss.str(), path, env);
}

}  // namespace tollgate::config
