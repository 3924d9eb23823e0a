#include "console/console.hpp"

#include <string>
#include <string_view>

#include "console/assets.hpp"
#include "gateway/core/errors.hpp"

namespace tollgate::console {

namespace {

// Scripts, styles, images and API calls only from the admin listener itself; no inline
// script or style, no framing, no plugins, forms post nowhere.
constexpr std::string_view csp =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

const asset* find(std::string_view name) {
    for (const auto& a : assets())
        if (a.name == name) return &a;
    return nullptr;
}

bool etag_matches(std::string_view if_none_match, std::string_view etag) {
    // A list of entity tags (weak ones compare weakly, as for GET they may).
    while (!if_none_match.empty()) {
        const auto comma = if_none_match.find(',');
        auto tag = if_none_match.substr(0, comma);
        while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) tag.remove_prefix(1);
        while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
        if (tag.starts_with("W/")) tag.remove_prefix(2);
        if (tag == etag || tag == "*") return true;
        if (comma == std::string_view::npos) break;
        if_none_match.remove_prefix(comma + 1);
    }
    return false;
}

server::admin_reply serve(const asset& a, std::string_view if_none_match, bool immutable) {
    server::admin_reply r;
    r.headers = {{"Content-Security-Policy", std::string(csp)},
                 {"Referrer-Policy", "no-referrer"},
                 {"X-Frame-Options", "DENY"},
                 {"Cross-Origin-Opener-Policy", "same-origin"},
                 {"ETag", std::string(a.etag)},
                 // A versioned URL never changes its content; the page itself is checked
                 // each time, so a new build is picked up at the next load.
                 {"Cache-Control", immutable ? "public, max-age=31536000, immutable" : "no-cache"}};
    if (etag_matches(if_none_match, a.etag)) {
        r.status = 304;
        return r;
    }
    r.content_type = std::string(a.content_type);
    r.body = std::string(a.body);
    return r;
}

server::admin_reply not_found() {
    return {404, core::openai_error_body(core::errc::not_found)};
}

}  // namespace

std::vector<server::admin_route> routes() {
    std::vector<server::admin_route> out;
    server::admin_route bare{"GET", "/ui", [](const server::admin_request&) {
                                 server::admin_reply r{308, ""};
                                 r.headers = {{"Location", "/ui/"}};
                                 return r;
                             }};
    bare.open = true;
    out.push_back(std::move(bare));
    server::admin_route index{"GET", "/ui/", [](const server::admin_request& req) {
                                  const asset* a = find("index.html");
                                  return a ? serve(*a, req.if_none_match, false) : not_found();
                              }};
    index.open = true;
    out.push_back(std::move(index));
    server::admin_route files{"GET", "/ui/", [](const server::admin_request& req) {
                                  // v/<version>/<file>: an old version's URL still gets
                                  // today's file, only not cached for good.
                                  std::string_view rest = req.path.substr(4);
                                  if (!rest.starts_with("v/")) return not_found();
                                  rest.remove_prefix(2);
                                  const auto slash = rest.find('/');
                                  if (slash == std::string_view::npos) return not_found();
                                  const bool current = rest.substr(0, slash) == version();
                                  const asset* a = find(rest.substr(slash + 1));
                                  if (!a || a->name == "index.html") return not_found();
                                  return serve(*a, req.if_none_match, current);
                              }};
    files.prefix = true;
    files.open = true;
    out.push_back(std::move(files));
    return out;
}

}  // namespace tollgate::console
