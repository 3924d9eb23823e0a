#include "gateway/upstream/providers/json_element.hpp"

#include <cstdint>
#include <string_view>

namespace tollgate::upstream {

namespace dom = simdjson::dom;
using core::json_writer;
using simdjson::SUCCESS;

void write_element(json_writer& w, dom::element e) {
    switch (e.type()) {
        case dom::element_type::ARRAY: {
            dom::array a;
            w.begin_array();
            if (e.get(a) == SUCCESS)
                for (dom::element x : a) write_element(w, x);
            w.end_array();
            return;
        }
        case dom::element_type::OBJECT: {
            dom::object o;
            w.begin_object();
            if (e.get(o) == SUCCESS)
                for (dom::key_value_pair kv : o) {
                    w.key(kv.key);
                    write_element(w, kv.value);
                }
            w.end_object();
            return;
        }
        case dom::element_type::INT64: {
            std::int64_t v = 0;
            if (e.get(v) != SUCCESS) break;
            w.integer(v);
            return;
        }
        case dom::element_type::UINT64: {
            std::uint64_t v = 0;
            if (e.get(v) != SUCCESS) break;
            w.uinteger(v);
            return;
        }
        case dom::element_type::DOUBLE: {
            double v = 0;
            if (e.get(v) != SUCCESS) break;
            w.number(v);
            return;
        }
        case dom::element_type::STRING: {
            std::string_view v;
            if (e.get(v) != SUCCESS) break;
            w.string(v);
            return;
        }
        case dom::element_type::BOOL: {
            bool v = false;
            if (e.get(v) != SUCCESS) break;
            w.boolean(v);
            return;
        }
        case dom::element_type::NULL_VALUE:
            break;
    }
    w.null();
}

}  // namespace tollgate::upstream
