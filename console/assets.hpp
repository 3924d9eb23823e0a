#pragma once
// The admin console's files (console/web), built into the binary by console/embed.cmake.

#include <span>
#include <string_view>

namespace tollgate::console {

struct asset {
    std::string_view name;          // e.g. "app.js"
    std::string_view content_type;  // e.g. "text/javascript; charset=utf-8"
    std::string_view etag;          // quoted hash of the content
    std::string_view body;
};

std::span<const asset> assets();
// A hash of every asset's content: the page loads them from /ui/v/<version>/.
std::string_view version();

}  // namespace tollgate::console
