#include "store/key_store_backend.hpp"

#include "store/database_url.hpp"

namespace tollgate::store {

std::unique_ptr<key_store_backend> make_key_store_backend(const std::string& path) {
    return is_postgres_url(path) ? make_pg_key_store_backend(path)
                                 : make_sqlite_key_store_backend(path);
}

}  // namespace tollgate::store
