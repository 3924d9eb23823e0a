#pragma once
// The tables tollgate keeps in its usage database, defined once: the SQLite and the
// PostgreSQL backends render their DDL and their column lists from these definitions,
// so the two databases cannot drift apart. Dialect-only bookkeeping (PostgreSQL's
// tollgate_schema and api_keys_version) stays with its backend.

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::store {

enum class sql_dialect { sqlite, postgres };

enum class column_type {
    identity,  // a generated row id: INTEGER PRIMARY KEY | BIGINT GENERATED … AS IDENTITY
    integer,   // INTEGER | INTEGER (fits 32 bits)
    bigint,    // INTEGER | BIGINT
    real,      // REAL | DOUBLE PRECISION
    boolean,   // INTEGER 0/1 | BOOLEAN
    text,      // TEXT | TEXT
};

struct column {
    std::string_view name;
    column_type type;
    bool not_null = false;
    std::string_view default_value = {};  // SQL literal; empty: none
    bool primary_key = false;
    bool unique = false;
    // Added after the first release: a database made before lacks it, and opening adds it.
    bool added_later = false;
};

struct index {
    std::string_view name, columns;  // "a, b"
    // Only this dialect's database has it; unset: both.
    std::optional<sql_dialect> only = {};
};

struct table {
    std::string_view name;
    std::vector<column> columns;
    std::vector<std::string_view> composite_key = {};  // PRIMARY KEY (a, b)
    std::vector<index> indexes = {};
    // SQLite: the rows live in the primary key's B-tree (no rowid, no second tree).
    bool without_rowid = false;
};

// One record per request (usage_record), and the ids of the batches stored (each batch
// is stored once, also when a spill file is replayed).
const table& usage_table();
const table& usage_batches_table();
// SQLite only: each key's totals per UTC day and model, kept in the same transaction as
// the records (write_batch adds each batch's sums). The per-key reads (budgets, reports
// for one key) read it instead of an index on usage (key_id, day): such an index puts
// one insertion point per key into every commit, and with many keys it was most of a
// record's cost. PostgreSQL keeps that index: its cost is the database server's, and a
// shared totals row would make the instances' commits wait for each other on a busy key.
const table& usage_daily_table();
// Keys made through the admin API, deletions of them, revocations of config-file keys.
const table& api_keys_table();
const table& api_key_deletions_table();
const table& api_key_revocations_table();

// CREATE TABLE IF NOT EXISTS with every column, then CREATE INDEX IF NOT EXISTS for each
// index; statements separated by ";\n".
std::string create_sql(const table& t, sql_dialect d);
// ALTER TABLE … ADD COLUMN for a column added later (PostgreSQL: IF NOT EXISTS; SQLite
// has none, so the caller checks table_info first).
std::string add_column_sql(const table& t, const column& c, sql_dialect d);
// The table's columns in order, "a, b, c", without the generated id: for INSERT and COPY.
std::string column_list(const table& t);
// How many columns column_list names.
std::size_t stored_column_count(const table& t);
// "?1, ?2, …" (SQLite) or "$1, $2, …" (PostgreSQL), n of them, numbered from `first`.
std::string placeholders(std::size_t n, sql_dialect d, std::size_t first = 1);

}  // namespace tollgate::store
