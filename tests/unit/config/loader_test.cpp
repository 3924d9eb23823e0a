#define BOOST_TEST_MODULE config_loader
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/digest.hpp"
#include "config/loader.hpp"

namespace bdata = boost::unit_test::data;
namespace tt = boost::test_tools;
using namespace tollgate::config;
using namespace std::chrono_literals;

namespace {

// The example of SPEC.md "Configuration (YAML)", verbatim. Line 1 is "server:".
const std::string spec_yaml = R"yaml(server:
  listen: ["127.0.0.1:8080"]      # one or more host:port
  threads: 0                      # 0 = one per core
  max_request_bytes: 8MiB
  header_timeout: 10s             # whole request head must arrive within this
  idle_timeout: 75s               # keep-alive idle, and the longest gap between two pieces of a request body
  drain_timeout: 30s
  max_connections: 20000          # beyond this, new connections are accepted and closed at once (never left in the backlog)
  access_log: off                 # off | stdout | /path/file (one JSON line per request; reopened on SIGUSR1)
  tls: {cert: server.pem, key: server.key}   # optional: terminate TLS for clients
admin:
  listen: "127.0.0.1:8081"        # admin API + /metrics; never on a public address by default
  token: ${TOLLGATE_ADMIN_TOKEN}

providers:
  openai:
    kind: openai                  # openai | azure | anthropic   (openai = any OpenAI-compatible server: vLLM, Ollama, llama.cpp, Groq...)
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    connect_timeout: 5s
    first_byte_timeout: 120s      # until the response head
    idle_timeout: 60s             # longest gap between two streamed chunks
    max_connections: 512          # pooled keep-alive connections to this provider
    ca_file: /etc/ssl/certs/ca-certificates.crt   # TLS is verified (peer + host name) unless tls_verify: false
  anthropic:
    kind: anthropic
    base_url: https://api.anthropic.com
    api_key: ${ANTHROPIC_API_KEY}
    default_max_tokens: 4096      # sent when an OpenAI-shaped request gives none (Anthropic requires it)
  local:
    kind: openai                  # a self-hosted vLLM; no api_key needed
    base_url: http://10.0.0.5:8000/v1
  azure-eu:
    kind: azure                   # a target's `model` is the deployment name
    base_url: https://myres.openai.azure.com
    api_key: ${AZURE_API_KEY}     # sent as the `api-key` header
    api_version: "2024-10-21"     # → {base_url}/openai/deployments/{model}/chat/completions?api-version=…

models:                           # the names clients ask for
  gpt-4o-mini:
    targets:
      - {provider: openai, model: gpt-4o-mini, weight: 3}
      - {provider: local, model: Qwen/Qwen2.5-7B-Instruct, weight: 1}
    fallbacks: [claude-haiku]     # other model names tried when every target failed
    price: {input_per_mtok: 0.15, output_per_mtok: 0.60, cached_input_per_mtok: 0.075}
  claude-haiku:
    targets: [{provider: anthropic, model: claude-3-5-haiku-latest}]
    price: {input_per_mtok: 0.80, output_per_mtok: 4.00}

routing:
  strategy: weighted              # weighted | least_busy | lowest_latency
  retries: 2                      # extra attempts on another target, only before any byte reached the client
  retry_on: [connect_error, timeout, 429, 500, 502, 503, 504]
  cooldown_after_failures: 3
  cooldown: 30s                   # a target failing that often in a row is skipped this long
  on_client_disconnect: cancel    # cancel: stop the upstream request, bill tokens seen so far (estimated if need be)
                                  # drain: keep reading the upstream (at most drain_limit) to bill the exact usage
  drain_limit: 60s

keys:
  - id: team-search
    key: ${TEAM_SEARCH_KEY}       # or key_sha256: <hex>; keys are held hashed in memory
    models: [gpt-4o-mini]         # omitted = every model
    limits: {rpm: 600, tpm: 200000, concurrency: 32}
    budget: {tokens: 50000000, usd: 200, period: month}   # period: day | month | total

usage:
  database: ./data/usage.db       # SQLite ledger (embedded default), or postgresql://… for many instances
  jsonl: ./data/usage.jsonl       # optional append-only log, one JSON record a line

state:
  backend: memory                 # memory | redis  (redis: limits and budgets shared by every instance)
  redis_url: redis://127.0.0.1:6379/0
  fail_mode: closed               # redis unreachable → closed: 503 server_error/state_unavailable; open: per-instance limits
  timeout: 200ms

policies: [auth, rate_limit, budget, router, usage]   # the chain, in order
)yaml";

using env_map = std::map<std::string, std::string, std::less<>>;

// Secrets the fake environment hands out; none may ever show up in an error.
const env_map spec_env{
    {"TOLLGATE_ADMIN_TOKEN", "adm-5ecret-token-0001"}, {"OPENAI_API_KEY", "sk-openai-5ecret-0002"},
    {"ANTHROPIC_API_KEY", "sk-ant-5ecret-0003"},       {"AZURE_API_KEY", "azure-5ecret-0004"},
    {"TEAM_SEARCH_KEY", "tg-team-search-5ecret-0005"},
};

env_lookup fake_env(env_map vars) {
    return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
        const auto it = vars.find(name);
        if (it == vars.end()) return std::nullopt;
        return it->second;
    };
}

load_result load(std::string_view yaml, const env_map& env = spec_env) {
    return load_config_text(yaml, "test.yaml", fake_env(env));
}

std::string all_errors(const load_result& r) {
    std::string out;
    for (const auto& e : r.errors) out += e.text() + "\n";
    return out;
}

// Whether some error is on `line` and mentions `part`.
bool has_error(const load_result& r, int line, std::string_view part) {
    return std::any_of(r.errors.begin(), r.errors.end(), [&](const config_error& e) {
        return e.line == line && e.message.find(part) != std::string::npos;
    });
}

// The smallest config with one provider, for tests of one field.
std::string provider_yaml(std::string_view base_url) {
    return "providers:\n"
           "  p:\n"
           "    kind: openai\n"
           "    base_url: \"" +
           std::string(base_url) + "\"\n";
}

struct bad_case {
    const char* name;
    std::string yaml;
    int line;               // the line the error must name
    std::string_view part;  // what the message must mention
};

std::ostream& operator<<(std::ostream& os, const bad_case& c) {
    return os << c.name;
}

const std::vector<bad_case> unknown_key_cases{
    {"top level", "server:\n  threads: 2\nlisteners: []\n", 3, "listeners"},
    {"server", "server:\n  listen: [\"127.0.0.1:8080\"]\n  thread: 2\n", 3, "thread"},
    {"server.tls", "server:\n  tls: {cert: a.pem, key: a.key, ca: c.pem}\n", 2, "ca"},
    {"provider",
     "providers:\n  openai:\n    kind: openai\n    base_url: https://api.openai.com/v1\n"
     "    apikey: x\n",
     5, "apikey"},
    {"target in a flow map",
     "providers:\n  p:\n    base_url: http://h/v1\nmodels:\n  m:\n    targets:\n"
     "      - {provider: p, model: x}\n      - {provider: p, model: y, wieght: 2}\n",
     8, "wieght"},
    {"price",
     "providers:\n  p:\n    base_url: http://h/v1\nmodels:\n  m:\n"
     "    targets: [{provider: p, model: x}]\n    price:\n      input_per_mtok: 1\n"
     "      output_per_token: 2\n",
     9, "output_per_token"},
    {"key limits",
     "keys:\n  - id: a\n    key_sha256: " + std::string(64, 'a') +
         "\n    limits:\n      rpm: 5\n      rps: 1\n",
     6, "rps"},
    {"routing", "routing:\n  strategy: weighted\n  retry: 2\n", 3, "retry"},
    {"state", "state:\n  backend: memory\n  redis: x\n", 3, "redis"},
};

const std::vector<bad_case> bad_value_cases{
    {"duration with a word unit", "server:\n  header_timeout: 10sec\n", 2, "header_timeout"},
    {"duration without unit", "server:\n  idle_timeout: 75\n", 2, "idle_timeout"},
    {"duration negative", "routing:\n  cooldown: -5s\n", 2, "cooldown"},
    {"duration zero where > 0 is needed", "server:\n  header_timeout: 0s\n", 2, "header_timeout"},
    {"provider duration",
     "providers:\n  p:\n    base_url: http://h/v1\n    first_byte_timeout: 2 minutes\n", 4,
     "first_byte_timeout"},
    {"size in MB", "server:\n  max_request_bytes: 8MB\n", 2, "max_request_bytes"},
    {"size with a space", "server:\n  max_request_bytes: 8 MiB\n", 2, "max_request_bytes"},
    {"size zero", "server:\n  max_request_bytes: 0\n", 2, "max_request_bytes"},
    {"provider kind", "providers:\n  p:\n    kind: gemini\n    base_url: http://h/v1\n", 3, "kind"},
    {"routing strategy", "routing:\n  strategy: random\n", 2, "strategy"},
    {"disconnect mode", "routing:\n  on_client_disconnect: ignore\n", 2, "on_client_disconnect"},
    {"budget period",
     "keys:\n  - id: a\n    key_sha256: " + std::string(64, 'a') +
         "\n    budget: {tokens: 5, period: week}\n",
     4, "period"},
    {"state backend", "state:\n  backend: etcd\n", 2, "backend"},
    {"fail mode", "state:\n  fail_mode: maybe\n", 2, "fail_mode"},
    {"listen without port", "server:\n  listen: [\"localhost\"]\n", 2, "listen"},
    {"threads not a number", "server:\n  threads: many\n", 2, "threads"},
    {"retry_on", "routing:\n  retry_on: [timeout, 200]\n", 2, "retry_on"},
    {"top level a list", "- policies\n- router\n", 1, "the top level: expected a mapping"},
    {"top level a scalar", "policies\n", 1, "the top level: expected a mapping"},
    {"tls_verify", "providers:\n  p:\n    base_url: http://h/v1\n    tls_verify: perhaps\n", 4,
     "tls_verify"},
    {"price",
     "providers:\n  p:\n    base_url: http://h/v1\nmodels:\n  m:\n"
     "    targets: [{provider: p, model: x}]\n    price: {input_per_mtok: cheap}\n",
     7, "input_per_mtok"},
    {"base_url scheme", provider_yaml("ftp://example.com/v1"), 4, "base_url"},
};

struct base_url_case {
    std::string url;
    bool tls;
    std::string host;
    std::uint16_t port;
    std::string path;
};

std::ostream& operator<<(std::ostream& os, const base_url_case& c) {
    return os << c.url;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(spec_example_loads) {
    const auto r = load(spec_yaml);
    BOOST_TEST_REQUIRE(r.errors.empty(), all_errors(r));
    BOOST_REQUIRE(r.config.has_value());
    const gateway_config& c = *r.config;
    BOOST_TEST(c.source_path == "test.yaml");

    BOOST_REQUIRE(c.server.listen.size() == 1u);
    BOOST_TEST(c.server.listen[0].host == "127.0.0.1");
    BOOST_TEST(c.server.listen[0].port == 8080);
    BOOST_TEST(c.server.threads == 0u);
    BOOST_TEST(c.server.max_request_bytes == 8u * 1024 * 1024);
    BOOST_TEST(c.server.header_timeout.count() == 10'000);
    BOOST_TEST(c.server.idle_timeout.count() == 75'000);
    BOOST_TEST(c.server.drain_timeout.count() == 30'000);
    BOOST_TEST(c.server.max_connections == 20000u);
    BOOST_TEST(c.server.access_log == "off");
    BOOST_REQUIRE(c.server.tls.has_value());
    BOOST_TEST(c.server.tls->cert == "server.pem");
    BOOST_TEST(c.server.tls->key == "server.key");

    BOOST_REQUIRE(c.admin.listen.has_value());
    BOOST_TEST(c.admin.listen->text() == "127.0.0.1:8081");
    BOOST_TEST(c.admin.token == "adm-5ecret-token-0001");

    BOOST_TEST(c.providers.size() == 4u);
    const auto* openai = c.find_provider("openai");
    BOOST_REQUIRE(openai);
    BOOST_TEST((openai->kind == provider_kind::openai));
    BOOST_TEST(openai->tls);
    BOOST_TEST(openai->host == "api.openai.com");
    BOOST_TEST(openai->port == 443);
    BOOST_TEST(openai->base_path == "/v1");
    BOOST_TEST(openai->api_key == "sk-openai-5ecret-0002");
    BOOST_TEST(openai->connect_timeout.count() == 5'000);
    BOOST_TEST(openai->first_byte_timeout.count() == 120'000);
    BOOST_TEST(openai->idle_timeout.count() == 60'000);
    BOOST_TEST(openai->max_connections == 512u);
    BOOST_TEST(openai->ca_file == "/etc/ssl/certs/ca-certificates.crt");
    BOOST_TEST(openai->tls_verify);

    const auto* anthropic = c.find_provider("anthropic");
    BOOST_REQUIRE(anthropic);
    BOOST_TEST((anthropic->kind == provider_kind::anthropic));
    BOOST_TEST(anthropic->host == "api.anthropic.com");
    BOOST_TEST(anthropic->port == 443);
    BOOST_TEST(anthropic->base_path == "");
    BOOST_TEST(anthropic->api_key == "sk-ant-5ecret-0003");
    BOOST_TEST(anthropic->default_max_tokens == 4096u);

    const auto* local = c.find_provider("local");
    BOOST_REQUIRE(local);
    BOOST_TEST((local->kind == provider_kind::openai));
    BOOST_TEST(!local->tls);
    BOOST_TEST(local->host == "10.0.0.5");
    BOOST_TEST(local->port == 8000);
    BOOST_TEST(local->base_path == "/v1");
    BOOST_TEST(local->api_key.empty());

    const auto* azure = c.find_provider("azure-eu");
    BOOST_REQUIRE(azure);
    BOOST_TEST((azure->kind == provider_kind::azure));
    BOOST_TEST(azure->host == "myres.openai.azure.com");
    BOOST_TEST(azure->api_key == "azure-5ecret-0004");
    BOOST_TEST(azure->api_version == "2024-10-21");

    BOOST_TEST(c.models.size() == 2u);
    const auto* mini = c.find_model("gpt-4o-mini");
    BOOST_REQUIRE(mini);
    BOOST_REQUIRE(mini->targets.size() == 2u);
    BOOST_TEST(mini->targets[0].provider == "openai");
    BOOST_TEST(mini->targets[0].model == "gpt-4o-mini");
    BOOST_TEST(mini->targets[0].weight == 3u);
    BOOST_TEST(mini->targets[1].provider == "local");
    BOOST_TEST(mini->targets[1].model == "Qwen/Qwen2.5-7B-Instruct");
    BOOST_TEST(mini->targets[1].weight == 1u);
    BOOST_TEST(mini->fallbacks == std::vector<std::string>{"claude-haiku"}, tt::per_element());
    BOOST_REQUIRE(mini->price.has_value());
    BOOST_TEST(mini->price->input_per_mtok == 0.15, tt::tolerance(1e-12));
    BOOST_TEST(mini->price->output_per_mtok == 0.60, tt::tolerance(1e-12));
    BOOST_REQUIRE(mini->price->cached_input_per_mtok.has_value());
    BOOST_TEST(*mini->price->cached_input_per_mtok == 0.075, tt::tolerance(1e-12));
    const auto* haiku = c.find_model("claude-haiku");
    BOOST_REQUIRE(haiku);
    BOOST_REQUIRE(haiku->targets.size() == 1u);
    BOOST_TEST(haiku->targets[0].provider == "anthropic");
    BOOST_TEST(haiku->targets[0].model == "claude-3-5-haiku-latest");
    BOOST_TEST(haiku->targets[0].weight == 1u);
    BOOST_TEST(haiku->fallbacks.empty());
    BOOST_REQUIRE(haiku->price.has_value());
    BOOST_TEST(haiku->price->output_per_mtok == 4.0, tt::tolerance(1e-12));
    BOOST_TEST(!haiku->price->cached_input_per_mtok.has_value());

    BOOST_TEST((c.routing.strategy == routing_strategy::weighted));
    BOOST_TEST(c.routing.retries == 2u);
    const std::vector<std::string> retry_on{"connect_error", "timeout", "429", "500",
                                            "502",           "503",     "504"};
    BOOST_TEST(c.routing.retry_on == retry_on, tt::per_element());
    BOOST_TEST(c.routing.cooldown_after_failures == 3u);
    BOOST_TEST(c.routing.cooldown.count() == 30'000);
    BOOST_TEST((c.routing.on_client_disconnect == disconnect_mode::cancel));
    BOOST_TEST(c.routing.drain_limit.count() == 60'000);

    BOOST_REQUIRE(c.keys.size() == 1u);
    const auto& key = c.keys[0];
    BOOST_TEST(key.id == "team-search");
    BOOST_TEST(key.key_sha256 == sha256_hex("tg-team-search-5ecret-0005"));
    BOOST_REQUIRE(key.models.has_value());
    BOOST_TEST(*key.models == std::vector<std::string>{"gpt-4o-mini"}, tt::per_element());
    BOOST_TEST(key.limits.rpm.value_or(0) == 600u);
    BOOST_TEST(key.limits.tpm.value_or(0) == 200000u);
    BOOST_TEST(key.limits.concurrency.value_or(0) == 32u);
    BOOST_REQUIRE(key.budget.has_value());
    BOOST_TEST(key.budget->tokens.value_or(0) == 50000000u);
    BOOST_TEST(key.budget->usd.value_or(0) == 200.0, tt::tolerance(1e-12));
    BOOST_TEST((key.budget->period == budget_period::month));

    BOOST_TEST(c.usage.database == "./data/usage.db");
    BOOST_TEST(c.usage.jsonl == "./data/usage.jsonl");
    BOOST_TEST((c.state.backend == state_backend::memory));
    BOOST_TEST(c.state.redis_url == "redis://127.0.0.1:6379/0");
    BOOST_TEST((c.state.on_failure == fail_mode::closed));
    BOOST_TEST(c.state.timeout.count() == 200);

    // Policy names are the registry's business, not the loader's: rate_limit, budget and
    // usage load even though nothing registers them yet.
    const std::vector<std::string> chain{"auth", "rate_limit", "budget", "router", "usage"};
    BOOST_TEST(c.policies == chain, tt::per_element());
    BOOST_TEST(c.policies_line == 77);
}

BOOST_AUTO_TEST_CASE(empty_config_loads_with_defaults) {
    const auto r = load("");
    BOOST_TEST_REQUIRE(r.errors.empty(), all_errors(r));
    BOOST_TEST(r.config->server.listen.size() == 1u);
    BOOST_TEST(r.config->providers.empty());
    BOOST_TEST(r.config->policies.empty());
}

BOOST_AUTO_TEST_CASE(quickstart_example_loads) {
    const auto r =
        load_config_file(TOLLGATE_SOURCE_DIR "/config/examples/quickstart.yaml", fake_env({}));
    BOOST_TEST(r.errors.empty(), all_errors(r));
}

BOOST_AUTO_TEST_CASE(unreadable_file_is_an_error_without_a_line) {
    const auto r = load_config_file("/nonexistent/tollgate.yaml", fake_env({}));
    BOOST_REQUIRE(r.errors.size() == 1u);
    BOOST_TEST(r.errors[0].line == 0);
    BOOST_TEST(r.errors[0].text().find("/nonexistent/tollgate.yaml") != std::string::npos);
    BOOST_TEST(!r.config.has_value());
}

BOOST_AUTO_TEST_CASE(yaml_syntax_error_names_a_line) {
    const auto r = load("server:\n  listen: [\"127.0.0.1:8080\"\n  threads: 2\n");
    BOOST_REQUIRE(!r.errors.empty());
    BOOST_TEST(r.errors[0].line > 0);
    BOOST_TEST(!r.config.has_value());
}

BOOST_DATA_TEST_CASE(unknown_key_is_an_error_naming_its_line, bdata::make(unknown_key_cases), c) {
    const auto r = load(c.yaml);
    BOOST_TEST(!r.config.has_value());
    BOOST_TEST(r.errors.size() == 1u, all_errors(r));
    BOOST_TEST(has_error(r, c.line, "unknown key '" + std::string(c.part) + "'"), all_errors(r));
}

BOOST_DATA_TEST_CASE(bad_value_is_an_error_naming_its_line, bdata::make(bad_value_cases), c) {
    const auto r = load(c.yaml);
    BOOST_TEST(!r.config.has_value());
    BOOST_TEST(r.errors.size() == 1u, all_errors(r));
    BOOST_TEST(has_error(r, c.line, c.part), all_errors(r));
}

BOOST_AUTO_TEST_CASE(every_error_is_reported_not_only_the_first) {
    const std::string yaml =
        "server:\n"                   // 1
        "  header_timeout: soon\n"    // 2  bad duration
        "  max_request_bytes: 8MB\n"  // 3  bad size
        "  colour: blue\n"            // 4  unknown key
        "routing:\n"                  // 5
        "  strategy: random\n"        // 6  bad enum
        "state:\n"                    // 7
        "  timeout: 200\n"            // 8  duration without unit
        "frobnicate: true\n";         // 9  unknown top-level key
    const auto r = load(yaml);
    BOOST_TEST(!r.config.has_value());
    std::vector<int> lines;
    for (const auto& e : r.errors) lines.push_back(e.line);
    std::sort(lines.begin(), lines.end());
    BOOST_TEST(lines == (std::vector<int>{2, 3, 4, 6, 8, 9}), tt::per_element());
    BOOST_TEST(has_error(r, 2, "header_timeout"));
    BOOST_TEST(has_error(r, 3, "max_request_bytes"));
    BOOST_TEST(has_error(r, 4, "colour"));
    BOOST_TEST(has_error(r, 6, "strategy"));
    BOOST_TEST(has_error(r, 8, "state.timeout"));
    BOOST_TEST(has_error(r, 9, "frobnicate"));
    // text() carries the line for --check.
    for (const auto& e : r.errors)
        BOOST_TEST(e.text().rfind("line " + std::to_string(e.line) + ": ", 0) == 0u, e.text());
}

BOOST_AUTO_TEST_CASE(unset_env_var_is_an_error_naming_it_without_secrets) {
    const std::string yaml =
        "admin:\n"                                                   // 1
        "  token: ${TOLLGATE_ADMIN_TOKEN}\n"                         // 2
        "providers:\n"                                               // 3
        "  openai:\n"                                                // 4
        "    kind: openai\n"                                         // 5
        "    base_url: https://api.openai.com/v1\n"                  // 6
        "    api_key: \"${OPENAI_API_KEY}:${OPENAI_ORG_SUFFIX}\"\n"  // 7
        "keys:\n"                                                    // 8
        "  - id: team\n"                                             // 9
        "    key: ${TEAM_SEARCH_KEY}${MISSING_KEY_PART}\n";          // 10
    const auto r = load(yaml);
    BOOST_TEST(!r.config.has_value());
    BOOST_TEST(has_error(r, 7, "OPENAI_ORG_SUFFIX"), all_errors(r));
    BOOST_TEST(has_error(r, 10, "MISSING_KEY_PART"), all_errors(r));
    const std::string text = all_errors(r);
    for (const auto& [name, secret] : spec_env)
        BOOST_TEST(text.find(secret) == std::string::npos, name << " leaked into: " << text);
    BOOST_TEST(text.find("5ecret") == std::string::npos, text);
}

BOOST_AUTO_TEST_CASE(unset_env_var_gives_no_misleading_follow_on_error) {
    // `tollgate --check` should print the real problem once: the variable is unset, not
    // "must not be empty" for a value the operator did write.
    const auto r =
        load("admin:\n  token: ${UNSET_TOKEN}\nkeys:\n  - id: a\n    key: ${UNSET_KEY}\n");
    BOOST_TEST(has_error(r, 2, "UNSET_TOKEN"), all_errors(r));
    BOOST_TEST(has_error(r, 5, "UNSET_KEY"), all_errors(r));
    BOOST_TEST(r.errors.size() == 2u, all_errors(r));
}

BOOST_AUTO_TEST_CASE(env_vars_are_substituted_inside_values) {
    const auto r = load("usage:\n  database: ${DATA_DIR}/usage-${ENV_NAME}.db\n",
                        {{"DATA_DIR", "/var/lib/tollgate"}, {"ENV_NAME", "prod"}});
    BOOST_TEST_REQUIRE(r.errors.empty(), all_errors(r));
    BOOST_TEST(r.config->usage.database == "/var/lib/tollgate/usage-prod.db");
}

BOOST_AUTO_TEST_CASE(sha256_hex_matches_the_standard_vectors) {
    BOOST_TEST(sha256_hex("") ==
               "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    BOOST_TEST(sha256_hex("abc") ==
               "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

BOOST_AUTO_TEST_CASE(plain_key_is_kept_only_as_its_sha256) {
    const std::string plain = "tg-plain-5ecret-key-abcdef";
    const auto r = load("keys:\n  - id: a\n    key: " + plain + "\n  - id: b\n    key: ${K}\n",
                        {{"K", "tg-env-5ecret-key"}});
    BOOST_TEST_REQUIRE(r.errors.empty(), all_errors(r));
    BOOST_REQUIRE(r.config->keys.size() == 2u);
    BOOST_TEST(r.config->keys[0].key_sha256 == sha256_hex(plain));
    BOOST_TEST(r.config->keys[1].key_sha256 == sha256_hex("tg-env-5ecret-key"));
    for (const auto& k : r.config->keys) {
        BOOST_TEST(k.key_sha256.size() == 64u);
        BOOST_TEST(k.id.find("5ecret") == std::string::npos);
        BOOST_TEST(k.key_sha256.find("5ecret") == std::string::npos);
        BOOST_TEST(!k.models.has_value());
    }
}

BOOST_AUTO_TEST_CASE(key_sha256_is_taken_as_given_in_lower_case) {
    std::string upper = sha256_hex("ops-key");
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    const auto r = load("keys:\n  - id: ops\n    key_sha256: " + upper + "\n");
    BOOST_TEST_REQUIRE(r.errors.empty(), all_errors(r));
    BOOST_TEST(r.config->keys[0].key_sha256 == sha256_hex("ops-key"));
}

BOOST_DATA_TEST_CASE(
    malformed_keys_are_errors,
    bdata::make(std::vector<bad_case>{
        {"key and key_sha256 together",
         "keys:\n  - id: a\n    key: k1\n    key_sha256: " + std::string(64, 'a') + "\n", 2,
         "exactly one of key or key_sha256"},
        {"neither key nor key_sha256", "keys:\n  - id: a\n    models: []\n", 2,
         "exactly one of key or key_sha256"},
        {"key_sha256 too short", "keys:\n  - id: a\n    key_sha256: abcd\n", 3, "key_sha256"},
        {"key_sha256 not hex", "keys:\n  - id: a\n    key_sha256: " + std::string(64, 'g') + "\n",
         3, "key_sha256"},
        {"empty key", "keys:\n  - id: a\n    key: \"\"\n", 3, "key"},
        {"missing id", "keys:\n  - key: k1\n", 2, "id is required"},
        {"keys not a list", "keys:\n  a: {key: k1}\n", 2, "expected a list"},
        {"duplicate ids", "keys:\n  - id: a\n    key: k1\n  - id: a\n    key: k2\n", 4,
         "duplicate id 'a'"},
        {"same secret twice", "keys:\n  - id: a\n    key: k1\n  - id: b\n    key: k1\n", 4,
         "same key"},
    }),
    c) {
    const auto r = load(c.yaml);
    BOOST_TEST(!r.config.has_value());
    BOOST_TEST(r.errors.size() == 1u, all_errors(r));
    BOOST_TEST(has_error(r, c.line, c.part), all_errors(r));
    // An error about a key never quotes it.
    BOOST_TEST(all_errors(r).find("k1") == std::string::npos);
}

BOOST_DATA_TEST_CASE(
    broken_references_are_errors,
    bdata::make(std::vector<bad_case>{
        {"unknown provider in a target",
         "providers:\n  p:\n    base_url: http://h/v1\nmodels:\n  m:\n"
         "    targets: [{provider: q, model: x}]\n",
         6, "unknown provider 'q'"},
        {"unknown fallback",
         "providers:\n  p:\n    base_url: http://h/v1\nmodels:\n  m:\n"
         "    targets: [{provider: p, model: x}]\n    fallbacks: [n]\n",
         7, "'n'"},
        {"every target weight 0",
         "providers:\n  p:\n    base_url: http://h/v1\nmodels:\n  m:\n"
         "    targets: [{provider: p, model: x, weight: 0}]\n",
         6, "weight 0"},
        {"key allows an unknown model", "keys:\n  - id: a\n    key: k1\n    models: [gpt-5]\n", 4,
         "'gpt-5'"},
        {"azure without api_version",
         "providers:\n  az:\n    kind: azure\n    base_url: https://x.openai.azure.com\n", 3,
         "api_version"},
    }),
    c) {
    const auto r = load(c.yaml);
    BOOST_TEST(!r.config.has_value());
    BOOST_TEST(r.errors.size() == 1u, all_errors(r));
    BOOST_TEST(has_error(r, c.line, c.part), all_errors(r));
}

BOOST_DATA_TEST_CASE(parse_duration_table,
                     bdata::make(std::vector<std::string>{"500ms", "0ms", "10s", "0s", "5m", "1h",
                                                          "24h", "1500ms"}) ^
                         bdata::make(std::vector<long>{500, 0, 10'000, 0, 300'000, 3'600'000,
                                                       86'400'000, 1500}),
                     text, ms) {
    const auto d = parse_duration(text);
    BOOST_REQUIRE(d.has_value());
    BOOST_TEST(d->count() == ms);
}

BOOST_DATA_TEST_CASE(parse_duration_rejects,
                     bdata::make(std::vector<std::string>{"", "10", "s", "ms", "10 s", "-1s",
                                                          "1.5s", "10d", "10S", "10sec", "s10",
                                                          "1h30m", "99999999999999999999s"}),
                     text) {
    BOOST_TEST(!parse_duration(text).has_value());
}

BOOST_DATA_TEST_CASE(parse_size_table,
                     bdata::make(std::vector<std::string>{"0", "65536", "100B", "64KiB", "8MiB",
                                                          "1GiB"}) ^
                         bdata::make(std::vector<std::size_t>{0, 65536, 100, 64u << 10, 8u << 20,
                                                              std::size_t{1} << 30}),
                     text, bytes) {
    const auto s = parse_size(text);
    BOOST_REQUIRE(s.has_value());
    BOOST_TEST(*s == bytes);
}

BOOST_DATA_TEST_CASE(parse_size_rejects,
                     bdata::make(std::vector<std::string>{"", "8MB", "8mib", "8 MiB", "-1", "KiB",
                                                          "1.5MiB", "8M", "MiB8", "0x10",
                                                          "99999999999999999999"}),
                     text) {
    BOOST_TEST(!parse_size(text).has_value());
}

BOOST_DATA_TEST_CASE(
    parse_listen_table,
    bdata::make(std::vector<std::string>{"127.0.0.1:8080", "0.0.0.0:0", "localhost:65535",
                                         "[::1]:8081", "[::]:443"}) ^
        bdata::make(std::vector<std::string>{"127.0.0.1|8080", "0.0.0.0|0", "localhost|65535",
                                             "::1|8081", "::|443"}),
    text, expected) {
    const auto a = parse_listen(text);
    BOOST_REQUIRE(a.has_value());
    BOOST_TEST(a->host + "|" + std::to_string(a->port) == expected);
}

BOOST_DATA_TEST_CASE(parse_listen_rejects,
                     bdata::make(std::vector<std::string>{
                         "", "127.0.0.1", ":8080", "host:", "127.0.0.1:65536", "127.0.0.1:http",
                         "127.0.0.1:-1", "[::1]8080", "[::1]", "[::1:80", "::1:80:x"}),
                     text) {
    BOOST_TEST(!parse_listen(text).has_value());
}

BOOST_DATA_TEST_CASE(base_url_is_split_into_scheme_host_port_and_path,
                     bdata::make(std::vector<base_url_case>{
                         {"https://api.openai.com/v1", true, "api.openai.com", 443, "/v1"},
                         {"https://api.anthropic.com", true, "api.anthropic.com", 443, ""},
                         {"https://api.anthropic.com/", true, "api.anthropic.com", 443, ""},
                         {"http://10.0.0.5:8000/v1", false, "10.0.0.5", 8000, "/v1"},
                         {"http://localhost/v1/", false, "localhost", 80, "/v1"},
                         {"https://example.com:8443/openai/v1//", true, "example.com", 8443,
                          "/openai/v1"},
                         {"https://[2001:db8::1]:8443/v1", true, "2001:db8::1", 8443, "/v1"},
                         {"http://[::1]/v1", false, "::1", 80, "/v1"},
                     }),
                     c) {
    const auto r = load(provider_yaml(c.url));
    BOOST_TEST_REQUIRE(r.errors.empty(), all_errors(r));
    const auto& p = r.config->providers.at(0);
    BOOST_TEST(p.base_url == c.url);
    BOOST_TEST(p.tls == c.tls);
    BOOST_TEST(p.host == c.host);
    BOOST_TEST(p.port == c.port);
    BOOST_TEST(p.base_path == c.path);
}

BOOST_DATA_TEST_CASE(
    bad_base_url_is_an_error,
    bdata::make(std::vector<std::string>{
        "ftp://example.com/v1", "https://user:pass@example.com/v1", "https://user@example.com",
        "example.com/v1", "https://", "https:///v1", "https://example.com:0/v1",
        "https://example.com:70000/v1", "https://example.com:port/v1", "https://example.com/v1?x=1",
        "https://example.com/v1#frag", "https://example.com?x=1", "https://example.com#frag",
        "https://[::1/v1", "https://[::1]x/v1", "http://exa mple.com/v1", "HTTPS//example.com"}),
    url) {
    const auto r = load(provider_yaml(url));
    BOOST_TEST(!r.config.has_value(),
               "accepted, host '" << (r.config ? r.config->providers.at(0).host : "") << "'");
    BOOST_TEST(r.errors.size() == 1u, all_errors(r));
    BOOST_TEST(has_error(r, 4, "base_url"), all_errors(r));
    // The userinfo (a credential) is not echoed.
    BOOST_TEST(all_errors(r).find("pass@") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(provider_without_base_url_is_an_error) {
    const auto r = load("providers:\n  p:\n    kind: openai\n");
    BOOST_TEST(!r.config.has_value());
    BOOST_TEST(has_error(r, 3, "base_url is required"), all_errors(r));
}

// Keys are held as SHA-256 digests; the per-thread hasher gives the standard digests, on
// every thread, call after call.
BOOST_AUTO_TEST_CASE(sha256_gives_the_standard_digests_on_every_thread) {
    auto check = [] {
        for (int i = 0; i < 3; ++i) {
            if (sha256_hex("abc") !=
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" ||
                sha256_hex("") !=
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                return false;
        }
        return true;
    };
    BOOST_TEST(check());
    bool other = false;
    std::thread t([&] { other = check(); });
    t.join();
    BOOST_TEST(other);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(admin_key_bodies_are_strict_json_objects) {
    using tollgate::config::parse_key_patch;
    const auto first_error = [](std::string_view body) {
        const auto r = parse_key_patch(body);
        return r.errors.empty() ? std::string() : r.errors.front().message;
    };
    BOOST_TEST(first_error(R"({"id":"svc-1","limits":{"rpm":5}})").empty());
    // YAML that is not JSON, JSON that is not an object, a field given twice: refused.
    BOOST_TEST(first_error("id: svc-1").find("not valid JSON") != std::string::npos);
    BOOST_TEST(first_error("{id: svc-1}").find("not valid JSON") != std::string::npos);
    BOOST_TEST(first_error(R"(["svc-1"])").find("JSON object") != std::string::npos);
    BOOST_TEST(first_error(R"({"id":"a","id":"b"})").find("given twice") != std::string::npos);
    BOOST_TEST(first_error("").find("not valid JSON") != std::string::npos);
}
