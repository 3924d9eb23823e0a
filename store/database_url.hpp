#pragma once
// Which kind of database a `usage.database` value names.

#include <string_view>

namespace tollgate::store {

// postgresql:// or postgres:// (libpq's URI prefixes): a PostgreSQL server several
// instances may share. Anything else is a SQLite file path.
bool is_postgres_url(std::string_view s) noexcept;

}  // namespace tollgate::store
