#pragma once
// A small streaming JSON writer over json_text: commas in one place, and strings escaped
// (invalid UTF-8 replaced) by json_text, so no output can come out malformed however odd
// the input strings are. Header-only, no parser: the translators that re-serialise parsed
// values add that themselves.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/core/json_text.hpp"

namespace tollgate::core {

class json_writer {
  public:
    json_writer& begin_object() {
        before_value();
        out_.push_back('{');
        first_.push_back(true);
        return *this;
    }
    json_writer& end_object() {
        out_.push_back('}');
        first_.pop_back();
        return *this;
    }
    json_writer& begin_array() {
        before_value();
        out_.push_back('[');
        first_.push_back(true);
        return *this;
    }
    json_writer& end_array() {
        out_.push_back(']');
        first_.pop_back();
        return *this;
    }
    json_writer& empty_array() { return begin_array().end_array(); }
    json_writer& key(std::string_view k) {
        comma();
        json_text::append_string(out_, k);
        out_.push_back(':');
        after_key_ = true;
        return *this;
    }
    json_writer& string(std::string_view s) {
        before_value();
        json_text::append_string(out_, s);
        return *this;
    }
    json_writer& integer(std::int64_t v) {
        before_value();
        json_text::append_int(out_, v);
        return *this;
    }
    json_writer& uinteger(std::uint64_t v) {
        before_value();
        json_text::append_uint(out_, v);
        return *this;
    }
    json_writer& number(double v) {
        before_value();
        json_text::append_double(out_, v);  // null for NaN and infinities
        return *this;
    }
    json_writer& boolean(bool v) {
        before_value();
        out_ += v ? "true" : "false";
        return *this;
    }
    json_writer& null() {
        before_value();
        out_ += "null";
        return *this;
    }
    // A JSON value this writer produced earlier (take()n), written as it is.
    json_writer& raw(std::string_view json) {
        before_value();
        out_ += json;
        return *this;
    }

    std::string take() { return std::move(out_); }

  private:
    void comma() {
        if (first_.empty()) return;
        if (!first_.back()) out_.push_back(',');
        first_.back() = false;
    }
    void before_value() {
        if (after_key_) {
            after_key_ = false;
            return;
        }
        comma();
    }

    std::string out_;
    std::vector<bool> first_;  // per open container: no member written yet
    bool after_key_ = false;
};

}  // namespace tollgate::core
