#pragma once
// A parsed JSON value (simdjson DOM) written again through core::json_writer: the
// translators copy tools' schemas, arguments and echoed settings this way, so what they
// write goes through the one JSON writer and its one escaping rule.

#include <simdjson.h>

#include "gateway/core/json_writer.hpp"

namespace tollgate::upstream {

// Depth is bounded by the parser's maximum depth.
void write_element(core::json_writer& w, simdjson::dom::element e);

}  // namespace tollgate::upstream
