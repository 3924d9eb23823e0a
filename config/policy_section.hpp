#pragma once
// A policy's own settings (Envoy's typed filter config): a top-level section of the config
// file named after a policy listed in `policies:`, other than the built-in sections. The
// loader keeps it as written (with ${NAME} substituted and its lines kept); the policy
// reads it in its own folder, through a policy_section::reader whose errors carry their
// lines, into an immutable typed config of its own, once per configuration.
//
//   policies: [auth, max_tokens_cap, rate_limit, budget, router, usage]
//   max_tokens_cap:
//     limit: 4096
//
// Thread-safety: immutable once loaded (a reader only reads); copies share the section.

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/config_error.hpp"

namespace tollgate::config {

// The errors a policy found in its section, each with its line (tollgate --check lists
// them as it lists the loader's).
class policy_section_error : public std::runtime_error {
  public:
    explicit policy_section_error(std::vector<config_error> errors);
    const std::vector<config_error>& errors() const noexcept { return errors_; }

  private:
    std::vector<config_error> errors_;
};

class policy_section {
  public:
    policy_section() = default;  // none: the config has no section for the policy
    bool present() const noexcept { return d_ != nullptr; }
    const std::string& name() const noexcept;
    int line() const noexcept;  // of the section's key
    // Whether a reader has looked at it: a section its policy never reads is an error
    // (the policy takes no settings), not silently ignored.
    bool read() const noexcept;

    // Reads one section. Each accessor answers nullopt for an absent key, and for a value
    // it cannot take (with an error at the value's line). finish() throws every error.
    class reader {
      public:
        // `allowed`: the section's keys; any other key is an error. An absent section
        // reads as an empty one.
        reader(const policy_section& s, std::initializer_list<std::string_view> allowed);
        reader(const reader&) = delete;
        reader& operator=(const reader&) = delete;

        std::optional<std::string> string(std::string_view key);
        std::optional<std::uint64_t> uint(std::string_view key, std::uint64_t min,
                                          std::uint64_t max);
        std::optional<double> number(std::string_view key);  // a non-negative number
        std::optional<bool> boolean(std::string_view key);
        std::optional<std::chrono::milliseconds> time(std::string_view key);  // 500ms, 10s, 5m
        std::optional<std::vector<std::string>> string_list(std::string_view key);
        // An error of the policy's own (a value out of the policy's rules), at the key's line.
        void error(std::string_view key, std::string message);
        // Throws policy_section_error when anything was wrong.
        void finish() const;

      private:
        struct value;
        std::optional<value> find(std::string_view key);
        const policy_section& s_;
        std::vector<config_error> errors_;
    };

    // The loader's side: `node` is a YAML::Node (kept opaque here so that users of this
    // header need no yaml-cpp), already ${NAME}-substituted.
    static policy_section make(std::string name, int line, const void* yaml_node);

  private:
    struct data;
    std::shared_ptr<data> d_;
};

}  // namespace tollgate::config
