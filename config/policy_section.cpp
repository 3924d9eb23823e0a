#include "config/policy_section.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "config/loader.hpp"

namespace tollgate::config {

struct policy_section::data {
    std::string name;
    int line = 0;
    YAML::Node node;
    mutable bool read = false;
};

struct policy_section::reader::value {
    YAML::Node node;
    std::string what;  // "<section>.<key>", for messages
};

namespace {

int line_of(const YAML::Node& n) {
    return n.IsDefined() && n.Mark().line >= 0 ? n.Mark().line + 1 : 0;
}

std::string joined(std::initializer_list<std::string_view> keys) {
    std::string s;
    for (auto k : keys) {
        if (!s.empty()) s += ", ";
        s += k;
    }
    return s;
}

}  // namespace

policy_section_error::policy_section_error(std::vector<config_error> errors)
    : std::runtime_error(errors.empty() ? std::string("bad settings") : errors.front().text()),
      errors_(std::move(errors)) {}

const std::string& policy_section::name() const noexcept {
    static const std::string none;
    return d_ ? d_->name : none;
}

int policy_section::line() const noexcept {
    return d_ ? d_->line : 0;
}

bool policy_section::read() const noexcept {
    return d_ && d_->read;
}

policy_section policy_section::make(std::string name, int line, const void* yaml_node) {
    policy_section s;
    s.d_ = std::make_shared<data>();
    s.d_->name = std::move(name);
    s.d_->line = line;
    s.d_->node = *static_cast<const YAML::Node*>(yaml_node);  // the loader's own copy
    return s;
}

policy_section::reader::reader(const policy_section& s,
                               std::initializer_list<std::string_view> allowed)
    : s_(s) {
    if (!s.d_) return;
    s.d_->read = true;
    const auto& n = s.d_->node;
    if (n.IsNull()) return;  // `name:` with nothing after it: an empty section
    if (!n.IsMap()) {
        errors_.push_back({line_of(n), s.d_->name + ": expected a mapping"});
        return;
    }
    for (const auto& kv : n) {
        const auto key = kv.first.Scalar();
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
            errors_.push_back({line_of(kv.first), "unknown key '" + key + "' in " + s.d_->name +
                                                      " (its keys: " + joined(allowed) + ")"});
    }
}

std::optional<policy_section::reader::value> policy_section::reader::find(std::string_view key) {
    if (!s_.d_ || !s_.d_->node.IsMap()) return std::nullopt;
    const std::string k(key);
    YAML::Node n = s_.d_->node[k];
    if (!n.IsDefined()) return std::nullopt;
    return value{n, s_.d_->name + "." + k};
}

std::optional<std::string> policy_section::reader::string(std::string_view key) {
    auto v = find(key);
    if (!v) return std::nullopt;
    if (!v->node.IsScalar()) {
        errors_.push_back({line_of(v->node), v->what + ": expected a scalar value"});
        return std::nullopt;
    }
    return v->node.Scalar();
}

std::optional<std::uint64_t> policy_section::reader::uint(std::string_view key, std::uint64_t min,
                                                          std::uint64_t max) {
    auto s = string(key);
    if (!s) return std::nullopt;
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (ec != std::errc{} || p != s->data() + s->size() || v < min || v > max) {
        error(key, "expected an integer from " + std::to_string(min) + " to " +
                       std::to_string(max) + ", got '" + *s + "'");
        return std::nullopt;
    }
    return v;
}

std::optional<double> policy_section::reader::number(std::string_view key) {
    auto s = string(key);
    if (!s) return std::nullopt;
    char* end = nullptr;
    const double v = std::strtod(s->c_str(), &end);
    if (s->empty() || end != s->c_str() + s->size() || !(v >= 0) || v > 1e12) {
        error(key, "expected a non-negative number, got '" + *s + "'");
        return std::nullopt;
    }
    return v;
}

std::optional<bool> policy_section::reader::boolean(std::string_view key) {
    auto s = string(key);
    if (!s) return std::nullopt;
    if (*s == "true" || *s == "yes" || *s == "on") return true;
    if (*s == "false" || *s == "no" || *s == "off") return false;
    error(key, "expected true or false, got '" + *s + "'");
    return std::nullopt;
}

std::optional<std::chrono::milliseconds> policy_section::reader::time(std::string_view key) {
    auto s = string(key);
    if (!s) return std::nullopt;
    if (auto d = parse_duration(*s)) return *d;
    error(key, "expected a duration like 500ms, 10s, 5m, 1h; got '" + *s + "'");
    return std::nullopt;
}

std::optional<std::vector<std::string>> policy_section::reader::string_list(std::string_view key) {
    auto v = find(key);
    if (!v) return std::nullopt;
    if (!v->node.IsSequence()) {
        errors_.push_back({line_of(v->node), v->what + ": expected a list"});
        return std::nullopt;
    }
    std::vector<std::string> out;
    for (const auto& item : v->node) {
        if (!item.IsScalar()) {
            errors_.push_back({line_of(item), v->what + ": expected a list of scalar values"});
            return std::nullopt;
        }
        out.push_back(item.Scalar());
    }
    return out;
}

void policy_section::reader::error(std::string_view key, std::string message) {
    auto v = find(key);
    const int line = v ? line_of(v->node) : s_.line();
    const std::string what = v ? v->what : s_.name() + "." + std::string(key);
    errors_.push_back({line, what + ": " + message});
}

void policy_section::reader::finish() const {
    if (!errors_.empty()) throw policy_section_error(errors_);
}

}  // namespace tollgate::config
