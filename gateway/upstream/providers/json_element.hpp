#pragma once
// The translators' shared JSON footing (simdjson DOM): reading members error-code style,
// and writing a parsed value again through core::json_writer (tools' schemas, arguments
// and echoed settings go through the one JSON writer and its one escaping rule).

#include <simdjson.h>

#include <cstdint>
#include <string_view>

#include "gateway/core/json_writer.hpp"

namespace tollgate::upstream {

// Depth is bounded by the parser's maximum depth.
void write_element(core::json_writer& w, simdjson::dom::element e);

// Members, error-code style. "Present" means present and not null: the OpenAI and
// Anthropic APIs both treat an explicit null like an absent field.
bool member(simdjson::dom::object o, std::string_view k, simdjson::dom::element& out);
bool member_object(simdjson::dom::object o, std::string_view k, simdjson::dom::object& out);
bool member_array(simdjson::dom::object o, std::string_view k, simdjson::dom::array& out);
bool member_string(simdjson::dom::object o, std::string_view k, std::string_view& out);
std::string_view string_or(simdjson::dom::object o, std::string_view k,
                           std::string_view fallback = {});

// An integral number, whichever way simdjson stored it (100.0 counts).
bool as_integer(simdjson::dom::element e, std::int64_t& out);
// A token count: 0 when absent, null, negative or not a number; capped at
// anthropic::max_token_count (10^15, no real count comes near), so that sums of a few
// counts cannot overflow.
std::int64_t count_of(simdjson::dom::object o, std::string_view k);

// `text` parsed (an empty view is no JSON: it may carry a null pointer, which simdjson
// would hand to memcpy).
bool parse_element(simdjson::dom::parser& p, std::string_view text, simdjson::dom::element& out);
bool parse_object(simdjson::dom::parser& p, std::string_view text, simdjson::dom::object& out);

}  // namespace tollgate::upstream
