#pragma once
// YAML → gateway_config. Every problem found is reported with its YAML line, and
// loading goes on after an error so that `tollgate --check` can list them all.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "config/config_error.hpp"
#include "config/digest.hpp"  // sha256_hex, for the loader's users

namespace tollgate::config {

using env_lookup = std::function<std::optional<std::string>(std::string_view)>;

struct load_result {
    std::optional<gateway_config> config;  // set only when errors is empty
    std::vector<config_error> errors;
};

// Reads the process environment.
std::optional<std::string> process_env(std::string_view name);

load_result load_config_text(std::string_view yaml, std::string_view source_name,
                             const env_lookup& env = process_env);
load_result load_config_file(const std::string& path, const env_lookup& env = process_env);

// The body of POST /admin/keys or PATCH /admin/keys/{id} (JSON): the fields it gives, read
// with the same rules as a `keys:` entry. `null` models means every model, `null` budget
// none. Values are taken literally (no ${NAME}). Unknown fields are errors.
struct key_patch {
    std::optional<std::string> id;
    bool has_models = false, has_limits = false, has_budget = false, has_allowed_cidrs = false;
    key_config terms;  // models, limits, budget and allowed_cidrs as given
};
struct key_patch_result {
    key_patch patch;
    std::vector<config_error> errors;
};
key_patch_result parse_key_patch(std::string_view json);

// What each mapping of the config may hold: the one list the loader checks unknown keys
// against; the JSON Schema and documentation tests compare with it. `path` names the
// mapping: "" (top level), "server", "providers.*" (any provider), "models.*.targets[]"
// (any item), ...; `anchor` is its section in docs/configuration.md.
struct config_section {
    std::string_view path;
    std::string_view anchor;
    std::vector<std::string_view> keys;
};
const std::vector<config_section>& config_sections();
// Throws std::logic_error for a path that is not in config_sections().
const config_section& config_section_for(std::string_view path);

// Parsers shared with the admin API and the tests. Return nullopt on a bad value.
std::optional<duration> parse_duration(std::string_view text);
std::optional<std::size_t> parse_size(std::string_view text);
std::optional<listen_address> parse_listen(std::string_view text);

}  // namespace tollgate::config
