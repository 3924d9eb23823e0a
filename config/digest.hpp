#pragma once
// SHA-256, the one digest tollgate holds secrets as: client keys (config `key`/
// `key_sha256`, admin-created keys, revocations) and the admin token.

#include <array>
#include <string>
#include <string_view>

namespace tollgate::config {

using sha256_digest = std::array<unsigned char, 32>;

sha256_digest sha256(std::string_view data) noexcept;
// Lower-case hex, 64 digits.
std::string sha256_hex(std::string_view data);

}  // namespace tollgate::config
