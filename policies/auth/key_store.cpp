#include "policies/auth/key_store.hpp"

#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <unordered_map>

#include "gateway/core/thread_name.hpp"

namespace tollgate::policies {

namespace {

constexpr char list_sep = '\x1f';  // joins a key's model names in one column

std::string to_hex(const key_digest& d) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(64, '0');
    for (std::size_t i = 0; i < d.size(); ++i) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    return out;
}

bool same_key(const config::key_config& a, const config::key_config& b) {
    const auto same_budget = [](const std::optional<config::budget_config>& x,
                                const std::optional<config::budget_config>& y) {
        if (x.has_value() != y.has_value()) return false;
        return !x || (x->tokens == y->tokens && x->usd == y->usd && x->period == y->period);
    };
    return a.key_sha256 == b.key_sha256 && a.models == b.models && a.limits.rpm == b.limits.rpm &&
           a.limits.tpm == b.limits.tpm && a.limits.concurrency == b.limits.concurrency &&
           same_budget(a.budget, b.budget) && a.allowed_cidrs == b.allowed_cidrs;
}

store::key_row to_row(const config::key_config& k, std::int64_t created_at_ms) {
    store::key_row r;
    r.id = k.id;
    r.key_sha256 = k.key_sha256;
    if (k.models) {
        std::string joined;
        for (const auto& m : *k.models) {
            if (!joined.empty()) joined += list_sep;
            joined += m;
        }
        r.models = std::move(joined);
    }
    r.rpm = k.limits.rpm;
    r.tpm = k.limits.tpm;
    r.concurrency = k.limits.concurrency;
    if (k.budget) {
        r.budget_tokens = k.budget->tokens;
        r.budget_usd = k.budget->usd;
        r.budget_period = config::budget_period_name(k.budget->period);
    }
    if (k.allowed_cidrs) {
        std::string joined;
        for (const auto& c : *k.allowed_cidrs) {
            if (!joined.empty()) joined += list_sep;
            joined += c.text;
        }
        r.allowed_cidrs = std::move(joined);
    }
    r.created_at_ms = created_at_ms;
    return r;
}

std::shared_ptr<config::key_config> from_row(const store::key_row& r) {
    auto k = std::make_shared<config::key_config>();
    k->id = r.id;
    k->key_sha256 = r.key_sha256;
    if (r.models) {
        std::vector<std::string> models;
        const std::string& joined = *r.models;
        std::size_t start = 0;
        while (start <= joined.size() && !joined.empty()) {
            const auto end = joined.find(list_sep, start);
            models.push_back(joined.substr(start, end - start));
            if (end == std::string::npos) break;
            start = end + 1;
        }
        k->models = std::move(models);
    }
    k->limits.rpm = r.rpm;
    k->limits.tpm = r.tpm;
    k->limits.concurrency = r.concurrency;
    if (r.budget_period) {
        config::budget_config b;
        b.tokens = r.budget_tokens;
        b.usd = r.budget_usd;
        const std::string& per = *r.budget_period;
        b.period = per == "day"     ? config::budget_period::day
                   : per == "total" ? config::budget_period::total
                                    : config::budget_period::month;
        k->budget = b;
    }
    if (r.allowed_cidrs) {
        // Written by to_row from ranges that parsed; one that does not (a hand edit) is
        // left out, so the key allows fewer addresses, never more.
        std::vector<config::cidr> ranges;
        std::string_view rest = *r.allowed_cidrs;
        while (!rest.empty()) {
            const auto end = rest.find(list_sep);
            if (auto c = config::parse_cidr(rest.substr(0, end))) ranges.push_back(std::move(*c));
            if (end == std::string_view::npos) break;
            rest.remove_prefix(end + 1);
        }
        k->allowed_cidrs = std::move(ranges);
    }
    return k;
}

std::int64_t unix_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Mirror entries (key_mirror): fields "k␞<id>" (a key's version), "d␞<id>" (its
// deletion), "r␞<id>␞<digest>" (a revoked config key); values start with their time,
// then the row's columns, separated by ␞ (U+001E, which no id, model or number holds).
constexpr char field_sep = '\x1e';

void append_opt(std::string& out, const std::optional<std::uint64_t>& v) {
    out += field_sep;
    if (v) out += std::to_string(*v);
}

std::string encode_key(const store::key_row& r) {
    std::string v = std::to_string(r.updated_at_ms);
    v += field_sep;
    v += std::to_string(r.created_at_ms);
    v += field_sep;
    v += r.key_sha256;
    v += field_sep;
    v += r.models ? "=" + *r.models : std::string("-");
    append_opt(v, r.rpm);
    append_opt(v, r.tpm);
    append_opt(v, r.concurrency);
    append_opt(v, r.budget_tokens);
    v += field_sep;
    if (r.budget_usd) {
        char buf[32];
        const auto res = std::to_chars(buf, buf + sizeof buf, *r.budget_usd);
        v.append(buf, res.ptr);
    }
    v += field_sep;
    if (r.budget_period) v += *r.budget_period;
    // Added later: an entry without it (from an older instance) allows any address.
    v += field_sep;
    v += r.allowed_cidrs ? "=" + *r.allowed_cidrs : std::string("-");
    return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    for (;;) {
        const auto at = s.find(sep);
        out.push_back(s.substr(0, at));
        if (at == std::string_view::npos) return out;
        s.remove_prefix(at + 1);
    }
}

std::optional<std::int64_t> parse_int(std::string_view s) {
    std::int64_t v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

std::optional<std::uint64_t> parse_opt_uint(std::string_view s, bool& ok) {
    if (s.empty()) return std::nullopt;
    std::uint64_t v = 0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size()) ok = false;
    return v;
}

std::optional<store::key_row> decode_key(std::string_view id, std::string_view value) {
    const auto p = split(value, field_sep);
    if (p.size() != 10 && p.size() != 11) return std::nullopt;
    store::key_row r;
    r.id = std::string(id);
    const auto updated = parse_int(p[0]), created = parse_int(p[1]);
    key_digest d;
    if (!updated || !created || !digest_from_hex(p[2], d)) return std::nullopt;
    r.updated_at_ms = *updated;
    r.created_at_ms = *created;
    r.key_sha256 = std::string(p[2]);
    if (p[3].empty() || (p[3][0] != '-' && p[3][0] != '=')) return std::nullopt;
    if (p[3][0] == '=') r.models = std::string(p[3].substr(1));
    bool ok = true;
    r.rpm = parse_opt_uint(p[4], ok);
    r.tpm = parse_opt_uint(p[5], ok);
    r.concurrency = parse_opt_uint(p[6], ok);
    r.budget_tokens = parse_opt_uint(p[7], ok);
    if (!p[8].empty()) {
        const std::string usd(p[8]);
        char* end = nullptr;
        r.budget_usd = std::strtod(usd.c_str(), &end);
        ok = ok && end == usd.c_str() + usd.size();
    }
    if (!p[9].empty()) {
        if (p[9] != "day" && p[9] != "month" && p[9] != "total") return std::nullopt;
        r.budget_period = std::string(p[9]);
    }
    if (p.size() == 11) {
        if (p[10].empty() || (p[10][0] != '-' && p[10][0] != '=')) return std::nullopt;
        if (p[10][0] == '=') r.allowed_cidrs = std::string(p[10].substr(1));
    }
    if (!ok) return std::nullopt;
    return r;
}

}  // namespace

std::size_t digest_hash::operator()(const key_digest& d) const noexcept {
    std::size_t h;
    std::memcpy(&h, d.data(), sizeof h);  // a SHA-256 digest is already uniform
    return h;
}

bool digest_from_hex(std::string_view hex, key_digest& out) noexcept {
    if (hex.size() != 64) return false;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < 32; ++i) {
        const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    return true;
}

key_store::key_store(const std::string& path) : backend_(store::make_key_store_backend(path)) {
    change_marker_ = backend_->change_marker();
    publish(load_table());
}

key_store::~key_store() {
    {
        std::lock_guard lock(stop_mu_);
        stopping_ = true;
    }
    stop_cv_.notify_all();
    if (refresher_.joinable()) refresher_.join();
}

std::shared_ptr<key_store::table> key_store::load_table() {
    // The database's rows (a failed or partial read throws), then the mirror's: per id the
    // newest version, unless a deletion is at least as new.
    std::unordered_map<std::string, store::key_row> rows;
    for (store::key_row& row : backend_->load()) rows.emplace(row.id, std::move(row));
    for (const store::key_row& row : remote_keys_) {
        const auto it = rows.find(row.id);
        if (it == rows.end())
            rows.emplace(row.id, row);
        else if (row.updated_at_ms > it->second.updated_at_ms)
            it->second = row;
    }
    std::unordered_map<std::string, std::int64_t> deleted;
    const auto note_deletion = [&](const store::deletion_row& d) {
        auto& at = deleted[d.id];
        at = std::max(at, d.deleted_at_ms);
    };
    for (const store::deletion_row& d : backend_->load_deletions()) note_deletion(d);
    for (const store::deletion_row& d : remote_deletions_) note_deletion(d);

    auto t = std::make_shared<table>();
    for (const auto& [id, row] : rows) {
        const auto del = deleted.find(id);
        if (del != deleted.end() && del->second >= row.updated_at_ms) continue;
        key_digest d;
        if (!digest_from_hex(row.key_sha256, d)) continue;
        std::shared_ptr<const config::key_config> k = from_row(row);
        t->by_digest.emplace(d, k);
        t->by_id.emplace(k->id, entry{k, row.created_at_ms});
    }
    const auto note_revocation = [&](const store::revocation_row& row) {
        key_digest d;
        if (digest_from_hex(row.key_sha256, d)) t->revoked.emplace(d, row.id);
    };
    for (const store::revocation_row& row : backend_->load_revocations()) note_revocation(row);
    for (const store::revocation_row& row : remote_revocations_) note_revocation(row);
    return t;
}

void key_store::read_mirror() {
    auto entries = mirror_->load();
    if (!entries) {
        mirror_version_.reset();  // read again at the next look
        return;
    }
    remote_keys_.clear();
    remote_deletions_.clear();
    remote_revocations_.clear();
    for (const auto& [field, value] : *entries) {
        const auto parts = split(field, field_sep);
        if (parts.size() == 2 && parts[0] == "k") {
            if (auto row = decode_key(parts[1], value)) remote_keys_.push_back(std::move(*row));
        } else if (parts.size() == 2 && parts[0] == "d") {
            if (const auto at = parse_int(value))
                remote_deletions_.push_back({std::string(parts[1]), *at});
        } else if (parts.size() == 3 && parts[0] == "r") {
            key_digest d;
            if (const auto at = parse_int(value); at && digest_from_hex(parts[2], d))
                remote_revocations_.push_back({std::string(parts[1]), std::string(parts[2]), *at});
        }
    }
}

void key_store::adopt_mirror() {
    // Newer versions from the mirror are written to this database too: every instance's
    // own database holds every key, deletion and revocation, so none depends on Redis
    // keeping its data (SPEC: durable in the usage database).
    std::unordered_map<std::string, std::int64_t> local_at;
    for (const store::key_row& r : backend_->load()) local_at[r.id] = r.updated_at_ms;
    std::unordered_map<std::string, std::int64_t> local_deleted;
    for (const store::deletion_row& d : backend_->load_deletions())
        local_deleted[d.id] = d.deleted_at_ms;
    for (const store::key_row& r : remote_keys_) {
        const auto it = local_at.find(r.id);
        const auto del = local_deleted.find(r.id);
        if ((it == local_at.end() || it->second < r.updated_at_ms) &&
            (del == local_deleted.end() || del->second < r.updated_at_ms))
            backend_->upsert(r);  // false: the digest is another id's here; left as it is
    }
    for (const store::deletion_row& d : remote_deletions_) {
        const auto del = local_deleted.find(d.id);
        if (del != local_deleted.end() && del->second >= d.deleted_at_ms) continue;
        backend_->record_deletion(d);
        const auto it = local_at.find(d.id);
        if (it != local_at.end() && it->second <= d.deleted_at_ms) backend_->remove(d.id);
    }
    for (const store::revocation_row& r : remote_revocations_) backend_->insert_revocation(r);
}

void key_store::mirror_put(std::vector<key_mirror::entry> entries) {
    if (!mirror_ || entries.empty()) return;
    if (!mirror_->put(entries)) {
        mirror_version_.reset();  // compare everything again once Redis answers
        spdlog::warn("key store: Redis unreachable; {} key change(s) reach it later",
                     entries.size());
    }
}

void key_store::set_mirror(std::shared_ptr<key_mirror> m) {
    {
        std::lock_guard lock(mu_);
        mirror_ = std::move(m);
        mirror_version_.reset();
        change_marker_ = -1;  // merge and push at once
    }
    try {
        refresh();
    } catch (const std::exception& e) {
        spdlog::warn("key store refresh: {}", e.what());
    }
}

bool key_store::refresh() {
    std::lock_guard lock(mu_);
    bool remote_changed = false;
    if (mirror_) {
        const auto v = mirror_->version();
        if (v && (!mirror_version_ || *v != *mirror_version_)) {
            mirror_version_ = v;
            read_mirror();
            remote_changed = true;
            adopt_mirror();
        }
    }
    // The marker first, then the table: the table read is at least as new as the marker,
    // so a change committed in between is reloaded (again) at the next look, never missed.
    const auto marker = backend_->change_marker();
    if (marker == change_marker_ && !remote_changed) return false;  // nothing new anywhere
    auto fresh = load_table();  // throws on a failed read: retried at the next look
    change_marker_ = marker;
    if (mirror_ && mirror_version_) {
        // What this database holds and the mirror lacks or has older goes back to it.
        std::unordered_map<std::string, std::int64_t> remote_at;
        for (const auto& r : remote_keys_)
            remote_at["k" + std::string(1, field_sep) + r.id] = r.updated_at_ms;
        for (const auto& d : remote_deletions_)
            remote_at["d" + std::string(1, field_sep) + d.id] = d.deleted_at_ms;
        for (const auto& r : remote_revocations_)
            remote_at["r" + std::string(1, field_sep) + r.id + field_sep + r.key_sha256] =
                r.revoked_at_ms;
        std::vector<key_mirror::entry> push;
        const auto consider = [&](std::string field, std::string value, std::int64_t at) {
            const auto it = remote_at.find(field);
            if (it == remote_at.end() || it->second < at)
                push.push_back({std::move(field), std::move(value), at});
        };
        for (const store::key_row& r : backend_->load())
            consider("k" + std::string(1, field_sep) + r.id, encode_key(r), r.updated_at_ms);
        for (const store::deletion_row& d : backend_->load_deletions())
            consider("d" + std::string(1, field_sep) + d.id, std::to_string(d.deleted_at_ms),
                     d.deleted_at_ms);
        for (const store::revocation_row& r : backend_->load_revocations())
            consider("r" + std::string(1, field_sep) + r.id + field_sep + r.key_sha256,
                     std::to_string(r.revoked_at_ms), r.revoked_at_ms);
        mirror_put(std::move(push));
    }
    const auto old = current();
    std::vector<std::pair<std::shared_ptr<const config::key_config>,
                          std::shared_ptr<const config::key_config>>>
        changed;  // before (or null), now
    for (const auto& [id, e] : fresh->by_id) {
        const auto it = old->by_id.find(id);
        if (it == old->by_id.end())
            changed.emplace_back(nullptr, e.key);
        else if (!same_key(*it->second.key, *e.key))
            changed.emplace_back(it->second.key, e.key);
    }
    bool removed = false;
    for (const auto& [id, e] : old->by_id) removed = removed || !fresh->by_id.contains(id);
    if (changed.empty() && !removed && fresh->revoked == old->revoked) return false;
    publish(std::move(fresh));
    if (listener_)
        for (const auto& [before, now] : changed) listener_(before.get(), *now);
    return true;
}

void key_store::set_listener(listener l) {
    std::lock_guard lock(mu_);
    listener_ = std::move(l);
}

void key_store::start_refresh(std::chrono::milliseconds every) {
    refresher_ = std::thread([this, every] {
        core::name_this_thread("tg-key-refresh");
        std::unique_lock lock(stop_mu_);
        for (;;) {
            stop_cv_.wait_for(lock, every, [this] { return stopping_ || wake_; });
            if (stopping_) break;
            wake_ = false;
            lock.unlock();
            try {
                if (refresh()) spdlog::info("keys changed by another instance: reloaded");
            } catch (const std::exception& e) {
                spdlog::warn("key store refresh: {}", e.what());
            }
            lock.lock();
        }
    });
}

void key_store::refresh_soon() {
    {
        std::lock_guard lock(stop_mu_);
        wake_ = true;
    }
    stop_cv_.notify_all();
}

key_store::result key_store::create(config::key_config key, std::int64_t now_ms) {
    std::lock_guard lock(mu_);
    const auto old = current();
    key_digest d;
    if (!digest_from_hex(key.key_sha256, d)) throw std::runtime_error("key store: bad digest");
    key.key_sha256 = to_hex(d);
    if (old->by_id.contains(key.id) || old->by_digest.contains(d)) return result::exists;
    store::key_row row = to_row(key, now_ms);
    row.updated_at_ms = now_ms;
    if (!backend_->insert(row)) return result::exists;  // another instance took it
    mirror_put({{"k" + std::string(1, field_sep) + row.id, encode_key(row), row.updated_at_ms}});
    auto t = std::make_shared<table>(*old);
    auto k = std::make_shared<const config::key_config>(std::move(key));
    t->by_digest.emplace(d, k);
    t->by_id.emplace(k->id, entry{k, now_ms});
    publish(std::move(t));
    return result::ok;
}

key_store::result key_store::update(const config::key_config& updated) {
    std::lock_guard lock(mu_);
    const auto old = current();
    const auto it = old->by_id.find(updated.id);
    if (it == old->by_id.end()) return result::not_found;
    auto k = std::make_shared<config::key_config>(updated);
    k->key_sha256 = it->second.key->key_sha256;  // the secret never changes
    store::key_row row = to_row(*k, it->second.created_at_ms);
    row.updated_at_ms = unix_now_ms();
    // An upsert: the key may have come from another instance through Redis and not be in
    // this database yet.
    if (!backend_->upsert(row)) return result::not_found;
    mirror_put({{"k" + std::string(1, field_sep) + row.id, encode_key(row), row.updated_at_ms}});
    auto t = std::make_shared<table>(*old);
    key_digest d;
    digest_from_hex(k->key_sha256, d);
    t->by_digest[d] = k;
    t->by_id[k->id] = entry{k, it->second.created_at_ms};
    publish(std::move(t));
    return result::ok;
}

key_store::result key_store::revoke(const std::string& id, const key_digest& digest,
                                    std::int64_t now_ms) {
    std::lock_guard lock(mu_);
    const auto old = current();
    if (old->is_revoked(id, digest)) return result::exists;
    // Revoked already by another instance a moment ago is fine: it is revoked.
    const std::string hex = to_hex(digest);
    backend_->insert_revocation(store::revocation_row{id, hex, now_ms});
    mirror_put(
        {{"r" + std::string(1, field_sep) + id + field_sep + hex, std::to_string(now_ms), now_ms}});
    auto t = std::make_shared<table>(*old);
    t->revoked[digest] = id;
    publish(std::move(t));
    return result::ok;
}

key_store::result key_store::remove(const std::string& id) {
    std::lock_guard lock(mu_);
    const auto old = current();
    const auto it = old->by_id.find(id);
    if (it == old->by_id.end()) return result::not_found;
    // Gone already (another instance deleted it a moment ago) is fine: it is gone. The
    // deletion is kept (with its time), so that an older version of the key elsewhere (in
    // Redis, in another instance's database) does not bring it back.
    const std::int64_t now_ms = unix_now_ms();
    backend_->remove(id);
    backend_->record_deletion(store::deletion_row{id, now_ms});
    mirror_put({{"d" + std::string(1, field_sep) + id, std::to_string(now_ms), now_ms}});
    auto t = std::make_shared<table>(*old);
    key_digest d;
    digest_from_hex(it->second.key->key_sha256, d);
    t->by_digest.erase(d);
    t->by_id.erase(id);
    publish(std::move(t));
    return result::ok;
}

}  // namespace tollgate::policies
