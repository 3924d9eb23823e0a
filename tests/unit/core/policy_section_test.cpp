#define BOOST_TEST_MODULE policy_section
#include <boost/test/unit_test.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/loader.hpp"
#include "gateway/core/policy_registry.hpp"
#include "gateway/core/snapshot.hpp"

using namespace tollgate;

namespace {

// A policy with settings of its own, as an out-of-tree author writes it: its typed config,
// read from its section in its own folder, then shared by every request.
class max_tokens_cap final : public core::policy {
  public:
    struct settings {
        std::uint64_t limit = 4096;
        std::string message = "max_tokens is over this gateway's cap";
        std::vector<std::string> exempt_models;
    };
    static settings read(const config::policy_section& s) {
        config::policy_section::reader r(s, {"limit", "message", "exempt_models"});
        settings out;
        if (auto v = r.uint("limit", 1, 1'000'000)) out.limit = *v;
        if (auto v = r.string("message")) {
            if (v->empty()) r.error("message", "must not be empty");
            out.message = *v;
        }
        if (auto v = r.string_list("exempt_models")) out.exempt_models = *v;
        r.finish();
        return out;
    }
    explicit max_tokens_cap(settings s) : s_(std::move(s)) {}
    std::string_view name() const noexcept override { return "max_tokens_cap"; }
    core::verdict on_request(core::request_context& ctx) const override {
        if (ctx.req.max_tokens.value_or(0) <= s_.limit) return core::verdict::next;
        ctx.set_error_reply(core::errc::invalid_request, s_.message);
        return core::verdict::reply;
    }
    const settings& current() const { return s_; }

  private:
    settings s_;
};

// A policy without settings.
class plain final : public core::policy {
  public:
    std::string_view name() const noexcept override { return "plain"; }
};

struct built {
    std::vector<config::config_error> errors;
    std::shared_ptr<const core::snapshot> snap;
    const max_tokens_cap* cap = nullptr;
};

built build(const std::string& yaml, const config::env_lookup& env = config::process_env) {
    built out;
    auto loaded = config::load_config_text(
        "providers:\n  p: {kind: openai, base_url: \"http://127.0.0.1:1/v1\"}\n"
        "models:\n  m: {targets: [{provider: p, model: m}]}\n" +
            yaml,
        "test.yaml", env);
    if (!loaded.config) {
        out.errors = loaded.errors;
        return out;
    }
    const max_tokens_cap* made = nullptr;
    core::policy_registry reg;
    auto none = [](const core::policy_init&) -> std::unique_ptr<core::policy> { return nullptr; };
    reg.add("auth", none, true);
    reg.add(
        "max_tokens_cap",
        [&](const core::policy_init& init) -> std::unique_ptr<core::policy> {
            auto p = std::make_unique<max_tokens_cap>(max_tokens_cap::read(init.section));
            made = p.get();
            return p;
        },
        false);
    reg.add(
        "plain",
        [](const core::policy_init&) -> std::unique_ptr<core::policy> {
            return std::make_unique<plain>();
        },
        false);
    reg.add("router", none, true);
    auto r = core::build_snapshot(std::move(*loaded.config), reg);
    out.errors = std::move(r.errors);
    out.snap = std::move(r.snap);
    out.cap = made;
    return out;
}

bool has_error(const built& b, int line, std::string_view text) {
    for (const auto& e : b.errors)
        if (e.line == line && e.message.find(text) != std::string::npos) return true;
    return false;
}

std::string all(const built& b) {
    std::string s;
    for (const auto& e : b.errors) s += e.text() + "\n";
    return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(a_policy_reads_its_own_section_into_its_typed_config) {
    auto b = build(
        "policies: [auth, max_tokens_cap, router]\n"
        "max_tokens_cap:\n"
        "  limit: 1000\n"
        "  message: ${CAP_MESSAGE}\n"
        "  exempt_models: [m]\n",
        [](std::string_view n) {
            return n == "CAP_MESSAGE" ? std::optional<std::string>("too long") : std::nullopt;
        });
    BOOST_TEST_REQUIRE(b.errors.empty(), all(b));
    BOOST_TEST_REQUIRE(b.cap);
    BOOST_TEST(b.cap->current().limit == 1000u);
    BOOST_TEST(b.cap->current().message == "too long");  // ${NAME} substituted by the loader
    BOOST_TEST(b.cap->current().exempt_models == std::vector<std::string>{"m"});
    core::request_context ctx;
    ctx.req.max_tokens = 1001;
    BOOST_TEST((b.cap->on_request(ctx) == core::verdict::reply));
    BOOST_TEST(ctx.reply.message == "too long");
}

BOOST_AUTO_TEST_CASE(without_a_section_the_policy_has_its_defaults) {
    auto b = build("policies: [auth, max_tokens_cap, router]\n");
    BOOST_TEST_REQUIRE(b.errors.empty(), all(b));
    BOOST_TEST(b.cap->current().limit == 4096u);
}

BOOST_AUTO_TEST_CASE(errors_in_a_section_carry_their_lines) {
    // Line numbers count the two provider/model lines the helper puts first.
    auto b = build(
        "policies: [auth, max_tokens_cap, router]\n"  // 5
        "max_tokens_cap:\n"                           // 6
        "  limit: lots\n"                             // 7
        "  mesage: typo\n"                            // 8
        "  message: ''\n"                             // 9
        "  exempt_models: m\n");                      // 10
    BOOST_TEST(!b.snap);
    BOOST_TEST(has_error(b, 7, "policy max_tokens_cap: max_tokens_cap.limit: expected an integer"),
               all(b));
    BOOST_TEST(has_error(b, 8, "unknown key 'mesage' in max_tokens_cap"), all(b));
    BOOST_TEST(has_error(b, 9, "max_tokens_cap.message: must not be empty"), all(b));
    BOOST_TEST(has_error(b, 10, "max_tokens_cap.exempt_models: expected a list"), all(b));
    BOOST_TEST(b.errors.size() == 4u, all(b));
}

BOOST_AUTO_TEST_CASE(a_section_without_its_policy_in_the_chain_is_an_unknown_key) {
    auto b = build(
        "policies: [auth, router]\n"
        "max_tokens_cap:\n"
        "  limit: 10\n");
    BOOST_TEST(has_error(b, 6, "unknown key 'max_tokens_cap' in the top level"), all(b));
}

BOOST_AUTO_TEST_CASE(a_section_for_a_policy_without_settings_is_refused) {
    auto b = build(
        "policies: [auth, plain, router]\n"
        "plain:\n"
        "  anything: 1\n");
    BOOST_TEST(has_error(b, 6, "policy plain takes no settings of its own"), all(b));
}

BOOST_AUTO_TEST_CASE(an_unset_variable_in_a_section_is_a_load_error) {
    auto b = build(
        "policies: [auth, max_tokens_cap, router]\n"
        "max_tokens_cap:\n"
        "  message: ${NOT_SET_ANYWHERE}\n",
        [](std::string_view) { return std::optional<std::string>{}; });
    BOOST_TEST(has_error(b, 7, "environment variable NOT_SET_ANYWHERE is not set"), all(b));
}

BOOST_AUTO_TEST_CASE(built_in_sections_stay_built_in) {
    // `usage` is a policy and a built-in section: the loader reads it as ever.
    auto loaded = config::load_config_text(
        "policies: [auth, router, usage]\nusage:\n  database: /tmp/x.db\n", "t.yaml");
    BOOST_TEST_REQUIRE(loaded.config.has_value());
    BOOST_TEST(loaded.config->usage.database == "/tmp/x.db");
    BOOST_TEST(loaded.config->policy_sections.empty());
}

BOOST_AUTO_TEST_SUITE_END()
