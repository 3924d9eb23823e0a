#pragma once
// One problem in a configuration, with its YAML line.

#include <string>

namespace tollgate::config {

struct config_error {
    int line = 0;  // 1-based; 0 when no line applies (file unreadable)
    std::string message;
    std::string text() const;
};

}  // namespace tollgate::config
