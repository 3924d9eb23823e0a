// The configuration's published contract agrees with the loader: the JSON Schema
// (config/tollgate.schema.json, for editors) names exactly the keys the loader accepts,
// with types and enumerations the loader honours; every shipped example config carries
// the schema comment, validates against the schema and passes `tollgate --check`; the
// configuration reference (docs/configuration.md) documents every key; and every
// relative link in README.md and docs/ resolves inside the repository.
#define BOOST_TEST_MODULE config_schema
#include <boost/test/unit_test.hpp>

#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "config/loader.hpp"
#include "tests/support/fixtures.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace dom = simdjson::dom;
using simdjson::SUCCESS;

namespace {

const fs::path root = TOLLGATE_SOURCE_DIR;

// ---------------------------------------------------------------------------------------
// The schema, and a validator for the part of JSON Schema (draft-07) it uses: type,
// properties, additionalProperties, required, enum, pattern, items, minItems, anyOf,
// minimum, maximum, $ref to #/definitions.

struct schema_doc {
    dom::parser parser;
    dom::element doc;
    std::string text;
    schema_doc() {
        text = read_file(root / "config/tollgate.schema.json");
        if (parser.parse(text).get(doc) != SUCCESS) throw std::runtime_error("schema is not JSON");
    }
    dom::element resolve(dom::element s) const {
        std::string_view r;
        while (s.is_object() && s["$ref"].get(r) == SUCCESS) {
            const std::string name(r.substr(r.rfind('/') + 1));
            if (doc["definitions"][name].get(s) != SUCCESS)
                throw std::runtime_error("dangling $ref " + std::string(r));
        }
        return s;
    }
};
schema_doc& schema() {
    static schema_doc s;
    return s;
}

// How a YAML scalar reads as JSON: quoted scalars are strings.
std::string scalar_type(const YAML::Node& n) {
    if (n.Tag() == "!") return "string";
    const std::string& v = n.Scalar();
    static const std::regex integer(R"(^-?[0-9]+$)"),
        number(R"(^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$)");
    if (v == "true" || v == "false") return "boolean";
    if (std::regex_match(v, integer)) return "integer";
    if (std::regex_match(v, number)) return "number";
    if (v == "null" || v == "~" || v.empty()) return "null";
    return "string";
}

bool type_matches(const YAML::Node& n, std::string_view type) {
    if (type == "object") return n.IsMap();
    if (type == "array") return n.IsSequence();
    if (!n.IsScalar()) return n.IsNull() && type == "null";
    const auto t = scalar_type(n);
    if (type == "number") return t == "number" || t == "integer";
    if (type == "string") return n.Tag() == "!" || t == "string";
    return t == type;
}

// Errors of `n` against `s`, each with its path.
void validate(const YAML::Node& n, dom::element s, const std::string& path,
              std::vector<std::string>& errors) {
    s = schema().resolve(s);
    dom::array any;
    if (s["anyOf"].get(any) == SUCCESS) {
        for (dom::element alt : any) {
            std::vector<std::string> e;
            validate(n, alt, path, e);
            if (e.empty()) return;
        }
        errors.push_back(path + ": matches none of anyOf");
        return;
    }
    std::string_view type;
    if (s["type"].get(type) == SUCCESS && !type_matches(n, type)) {
        errors.push_back(path + ": expected " + std::string(type));
        return;
    }
    dom::array en;
    if (s["enum"].get(en) == SUCCESS) {
        bool found = false;
        for (dom::element v : en) {
            std::string_view sv;
            if (v.get(sv) == SUCCESS && n.IsScalar() && n.Scalar() == sv) found = true;
        }
        if (!found) errors.push_back(path + ": not one of the enumeration");
    }
    std::string_view pattern;
    if (s["pattern"].get(pattern) == SUCCESS && n.IsScalar() &&
        !std::regex_search(n.Scalar(), std::regex(std::string(pattern))))
        errors.push_back(path + ": does not match " + std::string(pattern));
    double bound = 0;
    if (n.IsScalar() && (scalar_type(n) == "integer" || scalar_type(n) == "number")) {
        const double v = std::stod(n.Scalar());
        if (s["minimum"].get(bound) == SUCCESS && v < bound)
            errors.push_back(path + ": below minimum");
        if (s["maximum"].get(bound) == SUCCESS && v > bound)
            errors.push_back(path + ": above maximum");
    }
    if (n.IsMap()) {
        dom::object props;
        const bool has_props = s["properties"].get(props) == SUCCESS;
        dom::element additional;
        const bool has_additional = s["additionalProperties"].get(additional) == SUCCESS;
        for (const auto& kv : n) {
            const std::string key = kv.first.Scalar();
            dom::element sub;
            if (has_props && props[key].get(sub) == SUCCESS) {
                validate(kv.second, sub, path + "." + key, errors);
            } else if (has_additional && additional.is_bool()) {
                bool allowed = true;
                allowed = additional.get_bool().value_unsafe();
                if (!allowed) errors.push_back(path + ": unknown key '" + key + "'");
            } else if (has_additional) {
                validate(kv.second, additional, path + "." + key, errors);
            }
        }
        dom::array required;
        if (s["required"].get(required) == SUCCESS)
            for (dom::element r : required) {
                std::string_view k;
                if (r.get(k) == SUCCESS && !n[std::string(k)].IsDefined())
                    errors.push_back(path + ": '" + std::string(k) + "' is required");
            }
    }
    if (n.IsSequence()) {
        std::uint64_t min_items = 0;
        if (s["minItems"].get(min_items) == SUCCESS && n.size() < min_items)
            errors.push_back(path + ": too few items");
        dom::element items;
        if (s["items"].get(items) == SUCCESS)
            for (std::size_t i = 0; i < n.size(); ++i)
                validate(n[i], items, path + "[" + std::to_string(i) + "]", errors);
    }
}

// The schema object describing the mapping at a config_sections() path.
dom::element schema_at(const std::string& path) {
    auto& sc = schema();
    dom::element cur = sc.doc;
    std::string rest = path;
    while (!rest.empty()) {
        const auto dot = rest.find('.');
        std::string part = rest.substr(0, dot);
        rest = dot == std::string::npos ? "" : rest.substr(dot + 1);
        if (part == "*") {
            if (sc.resolve(cur)["additionalProperties"].get(cur) != SUCCESS)
                throw std::runtime_error(path + ": no additionalProperties");
            continue;
        }
        const bool item = part.ends_with("[]");
        if (item) part.resize(part.size() - 2);
        if (sc.resolve(cur)["properties"][part].get(cur) != SUCCESS)
            throw std::runtime_error(path + ": no property " + part);
        if (item && sc.resolve(cur)["items"].get(cur) != SUCCESS)
            throw std::runtime_error(path + ": no items");
    }
    return sc.resolve(cur);
}

std::set<std::string> schema_keys(const std::string& path) {
    std::set<std::string> out;
    dom::object props;
    if (schema_at(path)["properties"].get(props) == SUCCESS)
        for (auto f : props) out.emplace(f.key);
    return out;
}

// ---------------------------------------------------------------------------------------
// The loader, on a small valid config with one key set.

std::optional<std::string> any_env(std::string_view) {
    return std::string("tg-env-secret-0123456789abcdef");
}

YAML::Node base_config() {
    return YAML::Load(R"(
server: {listen: ["127.0.0.1:0"]}
providers:
  p: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  m: {targets: [{provider: p, model: up}]}
  m2: {targets: [{provider: p, model: up2}]}
keys:
  - {id: k, key: tg-0123456789abcdef0123456789abcdef}
)");
}

// The mapping a section path names, in `cfg` (made if missing).
YAML::Node mapping_at(YAML::Node cfg, const std::string& path) {
    if (path.empty()) return cfg;
    if (path == "server.tls") return cfg["server"]["tls"];
    if (path == "providers.*") return cfg["providers"]["p"];
    if (path == "models.*") return cfg["models"]["m"];
    if (path == "models.*.targets[]") return cfg["models"]["m"]["targets"][0];
    if (path == "models.*.price") return cfg["models"]["m"]["price"];
    if (path == "keys[]") return cfg["keys"][0];
    if (path == "keys[].limits") return cfg["keys"][0]["limits"];
    if (path == "keys[].budget") return cfg["keys"][0]["budget"];
    return cfg[path];
}

// Values the schema's examples cannot give on their own (they name things that exist).
const std::map<std::string, std::string> value_overrides = {
    {"models.*.fallbacks", "[m2]"},
    {"models.*.targets[].provider", "p"},
    {"keys[].models", "[m]"},
    {"keys[].key_sha256", "\"" + std::string(64, 'a') + "\""},
    {"policies", "[auth, router, usage]"},
};

// A config with `key` of section `path` set to `value` (YAML text), kept valid otherwise.
std::string config_with(const std::string& path, const std::string& key, const std::string& value) {
    YAML::Node cfg = base_config();
    YAML::Node m = mapping_at(cfg, path);
    if (path == "server.tls") {
        m["cert"] = "cert.pem";
        m["key"] = "key.pem";
    }
    if (path == "models.*.price") {
        m["input_per_mtok"] = 1;
        m["output_per_mtok"] = 1;
    }
    if (path == "admin") {
        m["listen"] = "127.0.0.1:0";
        m["token"] = "adm-token-0123456789";
    }
    if (path == "keys[]" && key == "key_sha256") m.remove("key");
    if (path == "providers.*" && key == "kind") m["api_version"] = "2024-10-21";
    m[key] = YAML::Load(value);
    YAML::Emitter out;
    out << cfg;
    return out.c_str();
}

std::vector<tollgate::config::config_error> load(const std::string& yaml) {
    return tollgate::config::load_config_text(yaml, "test.yaml", any_env).errors;
}

std::string joined(const std::vector<tollgate::config::config_error>& errors) {
    std::string s;
    for (const auto& e : errors) s += e.text() + "\n";
    return s;
}

std::string section_prefix(const std::string& path) {
    return path.empty() ? "" : path + ".";
}

// ---------------------------------------------------------------------------------------

std::string json_text(dom::element e) {
    return simdjson::to_string(e);
}

const std::vector<fs::path>& example_configs() {
    static const std::vector<fs::path> files = [] {
        std::vector<fs::path> out;
        for (const auto& dir : {root / "config/examples", root / "deploy/examples/two-instances",
                                root / "deploy/examples/two-instances/compose"})
            for (const auto& e : fs::directory_iterator(dir))
                if (e.path().extension() == ".yaml" && e.path().filename() != "compose.yaml")
                    out.push_back(e.path());
        out.push_back(root / "deploy/tollgate.example.yaml");
        return out;
    }();
    return files;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_AUTO_TEST_CASE(the_schema_names_exactly_the_keys_the_loader_accepts) {
    for (const auto& section : tollgate::config::config_sections()) {
        const std::string path(section.path);
        std::set<std::string> loader;
        for (auto k : section.keys) loader.emplace(k);
        BOOST_TEST_CONTEXT("section '" << path << "'") {
            const auto in_schema = schema_keys(path);
            for (const auto& k : loader) BOOST_TEST(in_schema.count(k) == 1u, "schema lacks " << k);
            for (const auto& k : in_schema) BOOST_TEST(loader.count(k) == 1u, "loader lacks " << k);
            // Mappings the schema closes like the loader does.
            bool additional = true;
            dom::element a;
            if (schema_at(path)["additionalProperties"].get(a) == SUCCESS && a.is_bool())
                additional = a.get_bool().value_unsafe();
            BOOST_TEST(!additional);
        }
    }
}

BOOST_AUTO_TEST_CASE(every_schema_example_and_enumeration_value_is_accepted_by_the_loader) {
    int checked = 0;
    for (const auto& section : tollgate::config::config_sections()) {
        const std::string path(section.path);
        if (path.empty()) continue;  // the sections themselves
        for (auto k : section.keys) {
            const std::string key(k);
            const dom::element raw = schema_at(path)["properties"][key].value_unsafe();
            const dom::element prop = schema().resolve(raw);
            std::vector<std::string> values;
            if (auto o = value_overrides.find(section_prefix(path) + key);
                o != value_overrides.end()) {
                values.push_back(o->second);
            } else {
                dom::array arr;
                if (prop["enum"].get(arr) == SUCCESS)
                    for (dom::element v : arr) values.push_back(json_text(v));
                else if (raw["examples"].get(arr) == SUCCESS)
                    for (dom::element v : arr) values.push_back(json_text(v));
            }
            std::string type;
            std::string_view t;
            if (prop["type"].get(t) == SUCCESS) type = t;
            if (values.empty() && type != "object" && type != "array")
                BOOST_ERROR(path + "." + key + ": the schema gives no example");
            for (const auto& v : values) {
                const auto cfg = config_with(path, key, v);
                const auto errors = load(cfg);
                BOOST_TEST(errors.empty(), path << "." << key << " = " << v << ":\n"
                                                << joined(errors) << cfg);
                // ... and the schema accepts the config too.
                std::vector<std::string> schema_errors;
                validate(YAML::Load(cfg), schema().doc, "", schema_errors);
                BOOST_TEST(schema_errors.empty(),
                           path << "." << key << " = " << v << ": "
                                << (schema_errors.empty() ? "" : schema_errors[0]));
                ++checked;
            }
            // A value outside an enumeration is refused by both.
            dom::array en;
            if (prop["enum"].get(en) == SUCCESS) {
                const auto cfg = config_with(path, key, "no-such-value");
                BOOST_TEST(!load(cfg).empty(), path << "." << key << ": a bogus value passed");
                std::vector<std::string> schema_errors;
                validate(YAML::Load(cfg), schema().doc, "", schema_errors);
                BOOST_TEST(!schema_errors.empty());
            }
            // A mapping where the schema wants a scalar is refused by both.
            bool scalar =
                type == "string" || type == "integer" || type == "number" || type == "boolean";
            dom::array alts;
            if (prop["anyOf"].get(alts) == SUCCESS) {
                scalar = true;
                for (dom::element alt : alts) {
                    std::string_view at;
                    if (schema().resolve(alt)["type"].get(at) == SUCCESS &&
                        (at == "array" || at == "object"))
                        scalar = false;
                }
            }
            if (scalar) {
                const auto cfg = config_with(path, key, "{nested: 1}");
                BOOST_TEST(!load(cfg).empty(), path << "." << key << ": a mapping passed");
                std::vector<std::string> schema_errors;
                validate(YAML::Load(cfg), schema().doc, "", schema_errors);
                BOOST_TEST(!schema_errors.empty(), path << "." << key);
            }
        }
    }
    BOOST_TEST(checked > 60);
}

BOOST_AUTO_TEST_CASE(an_unknown_key_names_its_documentation_section) {
    const auto errors = load(config_with("state", "colour", "blue"));
    BOOST_REQUIRE(!errors.empty());
    BOOST_TEST(
        joined(errors).find("unknown key 'colour' in state (see docs/configuration.md#state)") !=
            std::string::npos,
        joined(errors));
}

BOOST_AUTO_TEST_CASE(every_shipped_example_validates_and_passes_check) {
    BOOST_TEST(example_configs().size() >= 5u);
    const std::vector<std::pair<std::string, std::string>> env = {
        {"OPENAI_API_KEY", "sk-x"},
        {"ANTHROPIC_API_KEY", "sk-y"},
        {"TOLLGATE_ADMIN_TOKEN", "adm-x-0123456789"},
        {"TEAM_APP_KEY", "tg-app-0123456789abcdef0123"},
        {"BATCH_JOBS_KEY", "tg-batch-0123456789abcdef012"},
        {"TEAM_SEARCH_KEY", "tg-search-0123456789abcdef0"},
        {"PG_PASSWORD", "pw"},
        {"REDIS_PASSWORD", "pw"}};
    for (const auto& file : example_configs()) {
        BOOST_TEST_CONTEXT(file.string()) {
            const std::string text = read_file(file);
            // Editors find the schema through the yaml-language-server comment.
            static const std::regex comment(R"(# yaml-language-server: \$schema=(\S+))");
            std::smatch m;
            BOOST_TEST(std::regex_search(text, m, comment));
            if (!m.empty()) BOOST_TEST(fs::exists(file.parent_path() / m[1].str()), m[1].str());
            std::vector<std::string> errors;
            validate(YAML::Load(text), schema().doc, "", errors);
            BOOST_TEST(errors.empty(), (errors.empty() ? "" : errors[0]));
            const auto r =
                run_command({tollgate_binary(), "--check", "--config", file.string()}, 20s, env);
            BOOST_TEST(r.exit_code == 0, r.output);
        }
    }
}

BOOST_AUTO_TEST_CASE(the_configuration_reference_documents_every_key) {
    const std::string doc = read_file(root / "docs/configuration.md");
    for (const auto& section : tollgate::config::config_sections()) {
        // The section the loader's errors point at exists ...
        const std::string heading = section.anchor == "top-level-keys"
                                        ? "## Top-level keys"
                                        : "## " + std::string(section.anchor);
        const auto at = doc.find("\n" + heading + "\n");
        BOOST_TEST_REQUIRE(at != std::string::npos, "no heading " << heading);
        const auto end = doc.find("\n## ", at + 1);
        const std::string body =
            doc.substr(at, end == std::string::npos ? std::string::npos : end - at);
        // ... and names each of its keys.
        // ... and names each of its keys (`key`, or nested: `parent.key`, `key.child`).
        for (auto k : section.keys)
            BOOST_TEST((body.find("`" + std::string(k) + "`") != std::string::npos ||
                        body.find("`" + std::string(k) + ".") != std::string::npos ||
                        body.find("." + std::string(k) + "`") != std::string::npos),
                       heading << " does not document `" << k << "`");
    }
}

BOOST_AUTO_TEST_CASE(links_in_the_readme_and_docs_resolve_inside_the_repository) {
    std::vector<fs::path> pages = {root / "README.md"};
    for (const auto& e : fs::directory_iterator(root / "docs"))
        if (e.path().extension() == ".md") pages.push_back(e.path());
    static const std::regex link(R"(\]\(([^)\s]+)\))");
    int links = 0;
    for (const auto& page : pages) {
        const std::string text = read_file(page);
        BOOST_TEST(text.find("shared/SPEC") == std::string::npos, page.string());
        for (auto it = std::sregex_iterator(text.begin(), text.end(), link);
             it != std::sregex_iterator(); ++it) {
            std::string target = (*it)[1].str();
            if (target.starts_with("http://") || target.starts_with("https://") ||
                target.starts_with("mailto:"))
                continue;
            std::string anchor;
            if (const auto hash = target.find('#'); hash != std::string::npos) {
                anchor = target.substr(hash + 1);
                target.resize(hash);
            }
            const fs::path file =
                target.empty() ? page : fs::weakly_canonical(page.parent_path() / target);
            ++links;
            BOOST_TEST(fs::exists(file), page.filename().string() << " -> " << (*it)[1].str());
            BOOST_TEST(file.string().starts_with(fs::weakly_canonical(root).string()),
                       page.filename().string()
                           << " links outside the repository: " << (*it)[1].str());
            if (!anchor.empty() && fs::exists(file) && file.extension() == ".md") {
                // GitHub's heading anchors: lower case, spaces to '-', punctuation dropped.
                std::set<std::string> anchors;
                std::istringstream in(read_file(file));
                for (std::string line; std::getline(in, line);) {
                    if (!line.starts_with("#")) continue;
                    std::string h = line.substr(line.find_first_not_of('#'));
                    std::string a;
                    for (char c : h) {
                        if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')
                            a += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                        else if (c == ' ')
                            a += '-';
                    }
                    while (!a.empty() && a.front() == '-') a.erase(a.begin());
                    anchors.insert(a);
                }
                BOOST_TEST(anchors.count(anchor) == 1u, page.filename().string()
                                                            << " -> " << (*it)[1].str());
            }
        }
    }
    BOOST_TEST(links > 5);
}

BOOST_AUTO_TEST_SUITE_END()
