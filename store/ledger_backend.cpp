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

// The group columns of a query, in the order the rows give them.
std::vector<const char*> group_columns(const usage_query& q, sql_dialect d) {
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
    return columns;
}

std::string join(const std::vector<const char*>& columns, const char* suffix) {
    std::string s;
    for (const char* c : columns) {
        if (!s.empty()) s += ", ";
        s += c;
        s += suffix;
    }
    return s;
}

void group_and_order(std::string& sql, const std::vector<const char*>& columns, sql_dialect d) {
    if (columns.empty()) return;
    // COLLATE "C" on PostgreSQL: byte order, as SQLite's BINARY sorts, whatever the
    // database's locale, so both list the rows in the same order.
    sql += " GROUP BY " + join(columns, "") + " ORDER BY " +
           join(columns, d == sql_dialect::postgres ? " COLLATE \"C\"" : "");
}

// The key and model filters of a query.
void filter_key_model(builder& b, const usage_query& q) {
    if (q.key) {
        b.out.text += " AND key_id = ";
        b.param(*q.key);
    }
    if (q.model) {
        b.out.text += " AND model = ";
        b.param(*q.model);
    }
}

// The whole UTC days of a range start at day_ceil(since) and end at day_floor(until).
// SQLite's usage_daily is read only for bounds from 1970 to the last day of 9999: days
// are compared as "YYYY-MM-DD" text, which sorts by date only inside those years (and
// the arithmetic cannot overflow there); a bound outside reads the records.
constexpr std::int64_t ms_per_day = 86'400'000;
constexpr std::int64_t last_text_day = 253'402'214'400'000;  // 9999-12-31T00:00:00Z
constexpr bool in_text_days(std::int64_t ms) {
    return ms >= 0 && ms <= last_text_day;
}
constexpr std::int64_t day_floor(std::int64_t ms) {
    return ms / ms_per_day * ms_per_day;  // ms >= 0
}
constexpr std::int64_t day_ceil(std::int64_t ms) {
    return day_floor(ms) == ms ? ms : day_floor(ms) + ms_per_day;
}

// The query read from the records alone (PostgreSQL always; SQLite by hour, or for a
// range without a whole day in it).
void scan_usage(builder& b, const usage_query& q, const std::vector<const char*>& columns) {
    std::string& sql = b.out.text;
    sql = "SELECT ";
    if (!columns.empty()) sql += join(columns, "") + ", ";
    sql += "COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), ";
    sql += "COALESCE(SUM(";
    sql += billable_sql;
    sql += "), 0), ";
    sql += cost_sum(b.dialect);
    sql += " FROM usage WHERE TRUE";
    filter_key_model(b, q);
    if (q.since_ms) {
        sql += " AND ts_ms >= ";
        b.param(*q.since_ms);
    }
    if (q.until_ms) {
        sql += " AND ts_ms < ";
        b.param(*q.until_ms);
    }
    // PostgreSQL: redundant day bounds let it range-scan the (key_id, day) index for one key
    // (where the days sort as text).
    const bool pg = b.dialect == sql_dialect::postgres;
    if (pg && q.key && q.since_ms && in_text_days(*q.since_ms)) {
        sql += " AND day >= ";
        b.param(utc_day(*q.since_ms));
    }
    if (pg && q.key && q.until_ms && in_text_days(*q.until_ms)) {
        sql += " AND day <= ";
        b.param(utc_day(*q.until_ms));
    }
    group_and_order(sql, columns, b.dialect);
}

// One arm of the SQLite union: the records of [from, to), a row each.
void usage_arm(builder& b, const usage_query& q, std::int64_t from, std::int64_t to) {
    std::string& sql = b.out.text;
    sql +=
        " UNION ALL SELECT key_id, model, day, 1, COALESCE(prompt_tokens, 0), "
        "COALESCE(completion_tokens, 0), ";
    sql += billable_sql;
    sql += ", cost_usd FROM usage WHERE TRUE";
    filter_key_model(b, q);
    sql += " AND ts_ms >= ";
    b.param(from);
    sql += " AND ts_ms < ";
    b.param(to);
}

}  // namespace

ledger_sql aggregate_sql(const usage_query& q, sql_dialect d) {
    const std::vector<const char*> columns = group_columns(q, d);
    builder b{d, {}};
    // SQLite keeps each key's sums per day and model in usage_daily: the whole days of the
    // range are read from there, and only the part-days at its edges (if any) from the
    // records. By hour, or a range inside one day, reads the records.
    const bool text_days =
        (!q.since_ms || in_text_days(*q.since_ms)) && (!q.until_ms || in_text_days(*q.until_ms));
    std::int64_t first_whole = 0, end_whole = 0;
    if (text_days) {
        first_whole = q.since_ms ? day_ceil(*q.since_ms) : 0;
        end_whole = q.until_ms ? day_floor(*q.until_ms) : last_text_day + ms_per_day;
    }
    if (d == sql_dialect::postgres || q.by_hour || !text_days || first_whole >= end_whole) {
        scan_usage(b, q, columns);
        return std::move(b.out);
    }
    std::string& sql = b.out.text;
    sql = "SELECT ";
    if (!columns.empty()) sql += join(columns, "") + ", ";
    sql +=
        "COALESCE(SUM(n), 0), COALESCE(SUM(p), 0), COALESCE(SUM(c), 0), COALESCE(SUM(t), 0), "
        "TOTAL(cost) FROM (SELECT key_id, model, day, requests AS n, prompt_tokens AS p, "
        "completion_tokens AS c, total_tokens AS t, cost_usd AS cost FROM usage_daily "
        "WHERE TRUE";
    filter_key_model(b, q);
    if (q.since_ms) {
        sql += " AND day >= ";
        b.param(utc_day(first_whole));
    }
    if (q.until_ms) {
        sql += " AND day < ";
        b.param(utc_day(end_whole));
    }
    if (q.since_ms && *q.since_ms < first_whole) usage_arm(b, q, *q.since_ms, first_whole);
    if (q.until_ms && end_whole < *q.until_ms) usage_arm(b, q, end_whole, *q.until_ms);
    sql += ')';
    group_and_order(sql, columns, d);
    return std::move(b.out);
}

ledger_sql totals_sql(const std::string& key_id, std::int64_t since_ms, sql_dialect d) {
    builder b{d, {}};
    std::string& sql = b.out.text;
    if (d == sql_dialect::postgres || !in_text_days(since_ms)) {
        sql = "SELECT COALESCE(SUM(";
        sql += billable_sql;
        sql += "), 0), ";
        sql += cost_sum(d);
        sql += " FROM usage WHERE key_id = ";
        b.param(key_id);
        if (d == sql_dialect::postgres && in_text_days(since_ms)) {  // the (key_id, day) index
            sql += " AND day >= ";
            b.param(utc_day(since_ms));
        }
        sql += " AND ts_ms >= ";
        b.param(since_ms);
        return std::move(b.out);
    }
    const std::int64_t first_whole = day_ceil(since_ms);
    // SQLite: the whole days from usage_daily, the rest of the first day (a budget's period
    // starts at midnight, so usually nothing) from the records.
    sql =
        "SELECT COALESCE(SUM(t), 0), TOTAL(cost) FROM (SELECT total_tokens AS t, cost_usd AS "
        "cost FROM usage_daily WHERE key_id = ";
    b.param(key_id);
    sql += " AND day >= ";
    b.param(utc_day(first_whole));
    if (since_ms < first_whole) {
        sql += " UNION ALL SELECT ";
        sql += billable_sql;
        sql += ", cost_usd FROM usage WHERE key_id = ";
        b.param(key_id);
        sql += " AND ts_ms >= ";
        b.param(since_ms);
        sql += " AND ts_ms < ";
        b.param(first_whole);
    }
    sql += ')';
    return std::move(b.out);
}

std::string usage_daily_backfill_sql() {
    std::string sql = "INSERT INTO usage_daily (" + column_list(usage_daily_table()) +
                      ") SELECT key_id, day, model, COUNT(*), COALESCE(SUM(prompt_tokens), 0), "
                      "COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(";
    sql += billable_sql;
    sql += "), 0), TOTAL(cost_usd) FROM usage GROUP BY key_id, day, model";
    return sql;
}

std::unique_ptr<ledger_backend> make_ledger_backend(const std::string& database,
                                                    std::chrono::milliseconds busy_timeout) {
    return is_postgres_url(database) ? make_pg_ledger_backend(database)
                                     : make_sqlite_ledger_backend(database, busy_timeout);
}

}  // namespace tollgate::store
