#include "store/pg_connection.hpp"

#include <libpq-fe.h>

#include <charconv>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <utility>

namespace tollgate::store {

namespace {

// libpq prints NOTICEs ("relation already exists, skipping") to stderr by default.
void ignore_notice(void*, const char*) {}

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629), 0 if it is not one or is NUL.
std::size_t utf8_len(std::string_view s, std::size_t i) noexcept {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return 0;
    if (c < 0x80) return 1;
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    }
    if (len == 0 || i + len > s.size()) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
    }
    return len;
}

}  // namespace

bool is_postgres_url(std::string_view s) noexcept {
    return s.starts_with("postgresql://") || s.starts_with("postgres://");
}

std::string_view pg_safe_text(std::string_view s, std::string& scratch) {
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t n = utf8_len(s, i);
        if (n == 0) break;
        i += n;
    }
    if (i == s.size()) return s;
    scratch.assign(s.data(), i);
    while (i < s.size()) {
        const std::size_t n = utf8_len(s, i);
        if (n == 0) {
            scratch += "\xEF\xBF\xBD";
            ++i;
        } else {
            scratch.append(s.data() + i, n);
            i += n;
        }
    }
    return scratch;
}

// ---------------------------------------------------------------------------------------
// pg_result_ptr

void pg_result_ptr::clear::operator()(pg_result* r) const noexcept {
    PQclear(r);
}

bool pg_result_ptr::ok() const noexcept {
    if (!r_) return false;
    const auto s = PQresultStatus(r_.get());
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

int pg_result_ptr::rows() const noexcept {
    return r_ ? PQntuples(r_.get()) : 0;
}

bool pg_result_ptr::is_null(int row, int col) const noexcept {
    return !r_ || PQgetisnull(r_.get(), row, col) != 0;
}

std::string_view pg_result_ptr::text(int row, int col) const noexcept {
    if (is_null(row, col)) return {};
    return {PQgetvalue(r_.get(), row, col),
            static_cast<std::size_t>(PQgetlength(r_.get(), row, col))};
}

std::optional<std::string> pg_result_ptr::opt_text(int row, int col) const {
    if (is_null(row, col)) return std::nullopt;
    return std::string(text(row, col));
}

std::int64_t pg_result_ptr::int64(int row, int col) const noexcept {
    const std::string_view t = text(row, col);
    std::int64_t v = 0;
    std::from_chars(t.data(), t.data() + t.size(), v);
    return v;
}

std::uint64_t pg_result_ptr::uint64(int row, int col) const noexcept {
    const std::string_view t = text(row, col);
    if (t.empty() || t[0] == '-') return 0;
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec == std::errc::result_out_of_range) return std::numeric_limits<std::uint64_t>::max();
    return v;
}

double pg_result_ptr::dbl(int row, int col) const noexcept {
    // The server prints float8 with the shortest text that reads back exactly
    // (extra_float_digits 1, the default since PostgreSQL 12).
    const std::string t(text(row, col));
    return t.empty() ? 0.0 : std::strtod(t.c_str(), nullptr);
}

std::string_view pg_result_ptr::sqlstate() const noexcept {
    if (!r_) return {};
    const char* s = PQresultErrorField(r_.get(), PG_DIAG_SQLSTATE);
    return s ? std::string_view(s) : std::string_view();
}

// ---------------------------------------------------------------------------------------
// pg_connection

pg_connection::pg_connection(std::string url, std::string what)
    : url_(std::move(url)), what_(std::move(what)) {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(url_.c_str(), &err);
    if (!opts) {
        // libpq's message may quote parts of the URL: not repeated.
        PQfreemem(err);
        throw std::runtime_error(what_ +
                                 ": usage.database: malformed PostgreSQL URL (not shown: it "
                                 "may hold a password)");
    }
    std::string host, hostaddr, port, dbname, user;
    for (PQconninfoOption* o = opts; o->keyword; ++o) {
        if (!o->val) continue;
        const std::string_view k = o->keyword;
        if (k == "host") host = o->val;
        if (k == "hostaddr") hostaddr = o->val;
        if (k == "port") port = o->val;
        if (k == "dbname") dbname = o->val;
        if (k == "user") user = o->val;
        if (k == "password") password_ = o->val;
    }
    PQconninfoFree(opts);
    if (host.empty()) host = hostaddr.empty() ? "localhost" : hostaddr;
    name_ = host + ":" + (port.empty() ? "5432" : port) + "/" + (dbname.empty() ? user : dbname);
}

pg_connection::~pg_connection() {
    PQfinish(conn_);
}

bool pg_connection::broken() const noexcept {
    return !conn_ || PQstatus(conn_) != CONNECTION_OK;
}

bool pg_connection::ensure(std::string& error) {
    if (conn_ && PQstatus(conn_) == CONNECTION_OK) return true;
    if (!conn_) {
        // Defaults first: the URL's own settings (expanded from dbname) override them.
        static const char* const keywords[] = {"connect_timeout",
                                               "keepalives_idle",
                                               "keepalives_interval",
                                               "keepalives_count",
                                               "tcp_user_timeout",
                                               "application_name",
                                               "dbname",
                                               nullptr};
        const char* const values[] = {"5",     "10",       "5",          "3",
                                      "30000", "tollgate", url_.c_str(), nullptr};
        conn_ = PQconnectdbParams(keywords, values, 1);
        if (!conn_) {
            error = "out of memory";
            return false;
        }
        PQsetNoticeProcessor(conn_, ignore_notice, nullptr);
    } else {
        PQreset(conn_);  // same parameters; the notice processor stays
    }
    if (PQstatus(conn_) != CONNECTION_OK) {
        error = "cannot connect: " + scrub(PQerrorMessage(conn_));
        return false;
    }
    ++generation_;
    return true;
}

void pg_connection::ensure_or_throw() {
    std::string why;
    if (!ensure(why)) throw std::runtime_error(describe("", why));
}

pg_result_ptr pg_connection::exec(const char* sql) {
    return pg_result_ptr(PQexec(conn_, sql));
}

pg_result_ptr pg_connection::exec_params(const std::string& sql,
                                         const std::vector<const char*>& values) {
    return pg_result_ptr(PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                                      values.data(), nullptr, nullptr, 0));
}

pg_result_ptr pg_connection::exec_or_throw(const char* sql, std::string_view context) {
    pg_result_ptr r = exec(sql);
    if (!r.ok()) throw std::runtime_error(describe(context, error(r)));
    return r;
}

std::string pg_connection::error(const pg_result_ptr& r) const {
    const char* msg = r.get() ? PQresultErrorMessage(r.get()) : nullptr;
    if (!msg || !*msg) msg = conn_ ? PQerrorMessage(conn_) : "no connection";
    if (!msg || !*msg) msg = "unknown error";
    return scrub(msg);
}

std::string pg_connection::describe(std::string_view context, const std::string& why) const {
    std::string out = what_ + ": " + name_;
    if (!context.empty()) {
        out += ": ";
        out += context;
    }
    out += ": ";
    out += why;
    return out;
}

std::string pg_connection::scrub(std::string msg) const {
    // One line: libpq's messages end in '\n' and sometimes span two.
    for (char& c : msg)
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    while (!msg.empty() && msg.back() == ' ') msg.pop_back();
    // Defence in depth: libpq does not quote passwords, but the URL may be echoed by a
    // future version or a proxy's error text.
    if (msg.find(url_) != std::string::npos) return "(message withheld: it quoted the URL)";
    if (password_.size() >= 3)
        for (std::size_t pos; (pos = msg.find(password_)) != std::string::npos;)
            msg.replace(pos, password_.size(), "***");
    return msg;
}

}  // namespace tollgate::store
