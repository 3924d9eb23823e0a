// Fuzzes the configuration loader (config/loader.cpp) with the input as YAML text:
// load_config_text with an environment that knows every variable, parse_key_patch with
// the input as an admin API body (JSON is YAML), and the small value parsers.
//
// Invariants checked (besides ASan/UBSan):
//  - no exception escapes (an exception that is not a YAML::Exception would take down
//    `tollgate --check`, a reload, or an admin request);
//  - a config is returned exactly when there are no errors; every error has a message and
//    a line number within the text (0 = no line);
//  - a loaded config's references hold: every model target names a configured provider;
//  - parse_duration / parse_size / parse_listen never throw on any text, and what they
//    accept is within their documented ranges.

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>

#include "config/loader.hpp"
#include "fuzz/fuzz_common.hpp"

using namespace tollgate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    // ${NAME} resolves for every name: to "" for EMPTY*, a number for NUM*, else a key.
    const config::env_lookup env = [](std::string_view name) -> std::optional<std::string> {
        if (name.starts_with("UNSET")) return std::nullopt;
        if (name.starts_with("EMPTY")) return std::string();
        if (name.starts_with("NUM")) return std::string("42");
        return std::string("sk-fuzz-value");
    };
    const long lines = static_cast<long>(std::count(text.begin(), text.end(), '\n')) + 1;

    const config::load_result r = config::load_config_text(text, "fuzz.yaml", env);
    FUZZ_CHECK(r.config.has_value() == r.errors.empty(), text);
    for (const auto& e : r.errors) {
        FUZZ_CHECK(!e.message.empty(), text);
        FUZZ_CHECK(e.line >= 0 && e.line <= lines + 1,
                   std::string(text) + "\n  error: " + e.text());
        (void)e.text();
    }
    if (r.config) {
        for (const auto& m : r.config->models)
            for (const auto& t : m.targets)
                FUZZ_CHECK(r.config->find_provider(t.provider) != nullptr, text);
    }

    const config::key_patch_result p = config::parse_key_patch(text);
    for (const auto& e : p.errors) {
        FUZZ_CHECK(!e.message.empty(), text);
        // Not asserted: e.line == 0. parse_key_patch zeroes lines only on its main path;
        // a non-mapping body returns early with a YAML line. The admin API prints only
        // the message, so nobody sees it.
        FUZZ_CHECK(e.line >= 0, text);
    }

    // The value parsers, on the first line.
    const std::string_view line = text.substr(0, text.find('\n'));
    if (const auto d = config::parse_duration(line))
        FUZZ_CHECK(d->count() >= 0 && d->count() <= 365LL * 24 * 3600 * 1000, line);
    if (const auto s = config::parse_size(line); s && line.ends_with("B"))
        FUZZ_CHECK(*s <= (std::size_t{1} << 40), line);
    (void)config::parse_listen(line);
    return 0;
}
