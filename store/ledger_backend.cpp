#include "store/ledger_backend.hpp"

#include "store/database_url.hpp"

#include <string_view>
#include <utility>
#include <vector>

namespace tollgate::store {

namespace {

// The tokens a row charges: the SQL twin of billable_tokens().
constexpr const char* billable_sql =
    "COALESCE(total_tokens, COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0))";

// SQLite's TOTAL() is 0.0 over no rows; PostgreSQL's SUM is NULL there.
const char* cost_sum(sql_dialect d) {
    return d == sql_dialect::sqlite ? "TOTAL(cost_usd)" : "COALESCE(SUM(cost_usd), 0)";
}

struct builder {
    sql_dialect dialect;
    ledger_sql out;
    // Appends the next positional placeholder and its value.
    template <class T>
    void param(T&& value) {
        out.params.emplace_back(std::forward<T>(value));
        out.text += dialect == sql_dialect::sqlite ? '?' : '$';
        out.text += std::to_string(out.params.size());
    }
};

}  // namespace

ledger_sql aggregate_sql(const usage_query& q, sql_dialect d) {
    std::vector<const char*> columns;
    if (q.by_key) columns.push_back("key_id");
    if (q.by_model) columns.push_back("model");
    if (q.by_day) columns.push_back("day");
    // The UTC hour, "YYYY-MM-DDTHH", from the millisecond timestamp (floor: ts_ms >= 0).
    if (q.by_hour)
        columns.push_back(d == sql_dialect::sqlite
                              ? "strftime('%Y-%m-%dT%H', ts_ms / 1000, 'unixepoch')"
                              : "to_char(to_timestamp(ts_ms / 1000) AT TIME ZONE 'UTC', "
                                "'YYYY-MM-DD\"T\"HH24')");
    auto join = [&](const char* suffix) {
        std::string s;
        for (const char* c : columns) {
            if (!s.empty()) s += ", ";
            s += c;
            s += suffix;
        }
        return s;
    };
    const std::string group = join("");

    builder b{d, {}};
    std::string& sql = b.out.text;
    sql = "SELECT ";
    if (!group.empty()) sql += group + ", ";
    sql += "COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), ";
    sql += "COALESCE(SUM(";
    sql += billable_sql;
    sql += "), 0), ";
    sql += cost_sum(d);
    sql += " FROM usage WHERE TRUE";
    auto filter = [&](const char* condition, auto&& value) {
        sql += condition;
        b.param(std::forward<decltype(value)>(value));
    };
    if (q.key) filter(" AND key_id = ", *q.key);
    if (q.model) filter(" AND model = ", *q.model);
    if (q.since_ms) filter(" AND ts_ms >= ", *q.since_ms);
    if (q.until_ms) filter(" AND ts_ms < ", *q.until_ms);
    // Redundant day bounds let the database range-scan the (key_id, day) index for one key.
    if (q.key && q.since_ms) filter(" AND day >= ", utc_day(*q.since_ms));
    if (q.key && q.until_ms) filter(" AND day <= ", utc_day(*q.until_ms));
    // COLLATE "C" on PostgreSQL: byte order, as SQLite's BINARY sorts, whatever the
    // database's locale, so both list the rows in the same order.
    if (!group.empty())
        sql += " GROUP BY " + group + " ORDER BY " +
               join(d == sql_dialect::postgres ? " COLLATE \"C\"" : "");
    return std::move(b.out);
}

ledger_sql totals_sql(const std::string& key_id, std::int64_t since_ms, sql_dialect d) {
    builder b{d, {}};
    std::string& sql = b.out.text;
    sql = "SELECT COALESCE(SUM(";
    sql += billable_sql;
    sql += "), 0), ";
    sql += cost_sum(d);
    sql += " FROM usage WHERE key_id = ";
    b.param(key_id);
    sql += " AND day >= ";
    b.param(utc_day(since_ms));
    sql += " AND ts_ms >= ";
    b.param(since_ms);
    return std::move(b.out);
}

std::unique_ptr<ledger_backend> make_ledger_backend(const std::string& database,
                                                    std::chrono::milliseconds busy_timeout) {
    return is_postgres_url(database) ? make_pg_ledger_backend(database)
                                     : make_sqlite_ledger_backend(database, busy_timeout);
}

}  // namespace tollgate::store
