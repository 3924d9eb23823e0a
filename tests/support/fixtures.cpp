#include "tests/support/fixtures.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/test/unit_test.hpp>

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace tollgate::test {

using namespace std::chrono_literals;

std::string tollgate_binary() {
    // TOLLGATE_TEST_BIN runs the suite against another build (an installed binary, or an
    // older commit's to show which cases it fails).
    if (const char* bin = std::getenv("TOLLGATE_TEST_BIN"); bin && *bin) return bin;
    return TOLLGATE_BIN;
}
std::string mock_binary() {
    return MOCK_BIN;
}

std::filesystem::path make_temp_dir() {
    std::random_device rd;
    for (int i = 0; i < 100; ++i) {
        auto p = std::filesystem::temp_directory_path() /
                 ("tollgate-test-" + std::to_string(rd()) + std::to_string(rd()));
        if (std::filesystem::create_directory(p)) return p;
    }
    throw std::runtime_error("cannot create a temp dir");
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::uint16_t closed_port() {
    // Below the kernel's ephemeral range (ip_local_port_range, 32768+ by default): a port
    // handed out for port 0 (a mock, an admin listener of the same test) can never be
    // this one, as it could be if we took an ephemeral port and released it. Bound once
    // here to check that nothing listens on it now.
    unsigned lo = 32768, hi = 60999;
    if (std::FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
        if (std::fscanf(f, "%u %u", &lo, &hi) != 2) lo = 32768;
        std::fclose(f);
    }
    const unsigned top = std::max(2048u, std::min(lo, 65536u)) - 1;
    std::random_device rd;
    for (int i = 0; i < 1000; ++i) {
        const auto port = static_cast<std::uint16_t>(1024 + rd() % (top - 1024));
        boost::asio::io_context ioc;
        boost::asio::ip::tcp::acceptor a(ioc);
        boost::system::error_code ec;
        const boost::asio::ip::tcp::endpoint ep(boost::asio::ip::make_address("127.0.0.1"), port);
        a.open(ep.protocol(), ec);
        if (!ec) a.bind(ep, ec);
        if (!ec) return port;  // free now; released when `a` goes
    }
    throw std::runtime_error("closed_port: no free port below the ephemeral range");
}

namespace {
std::uint16_t port_from_line(const std::string& line) {
    const auto colon = line.rfind(':');
    if (colon == std::string::npos) throw std::runtime_error("no port in: " + line);
    return static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
}
}  // namespace

mock_upstream::mock_upstream(std::vector<std::string> args) {
    tls_ = std::find(args.begin(), args.end(), "--tls-cert") != args.end();
    std::vector<std::string> argv{mock_binary(), "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    proc_ = std::make_unique<child_process>(argv);
    auto line = proc_->wait_for_line("listening on", 20s);
    if (!line) throw std::runtime_error("mock upstream did not start: " + proc_->output());
    port_ = port_from_line(*line);
}

mock_upstream::~mock_upstream() {
    check_clean_exit("mock_upstream", proc_->stop(SIGTERM, 30s), proc_->output());
}

gateway_process::~gateway_process() {
    if (!stopped_) check_clean_exit("tollgate", proc_->stop(SIGTERM, 60s), proc_->output());
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

void check_clean_exit(const std::string& name, int exit_code, const std::string& output) {
    bool report = false;
    for (const char* marker :
         {"AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"})
        if (output.find(marker) != std::string::npos) report = true;
    if (exit_code == 0 && !report) return;
    const std::string tail = output.size() > 6000 ? output.substr(output.size() - 6000) : output;
    if (boost::unit_test::framework::test_in_progress()) {
        BOOST_ERROR(name << " did not exit cleanly (code " << exit_code << "):\n" << tail);
    } else {
        std::fprintf(stderr, "%s did not exit cleanly (code %d):\n%s\n", name.c_str(), exit_code,
                     tail.c_str());
        std::_Exit(1);
    }
}

bool mock_upstream::wait_for(const std::string& field, int at_least, int timeout_ms) const {
    http_connection c(port_, std::chrono::milliseconds(timeout_ms + 5000), tls_);
    auto r = c.request("GET", "/mock/wait?field=" + field + "&atleast=" + std::to_string(at_least) +
                                  "&timeout_ms=" + std::to_string(timeout_ms));
    return r.status == 200;
}

std::string mock_upstream::last_request() const {
    return http_request(port_, "GET", "/mock/last", {}, {}, tls_).body;
}

std::string mock_upstream::stats() const {
    return http_request(port_, "GET", "/mock/stats", {}, {}, tls_).body;
}

long mock_upstream::counter(const std::string& name) const {
    const std::string body = stats();
    const std::string tag = "\"" + name + "\":";
    const auto at = body.find(tag);
    return at == std::string::npos ? -1 : std::atol(body.c_str() + at + tag.size());
}

gateway_process::gateway_process(const std::string& yaml,
                                 std::vector<std::pair<std::string, std::string>> env)
    : dir_(make_temp_dir()) {
    const auto path = dir_ / "tollgate.yaml";
    std::ofstream(path) << yaml;
    env.emplace_back("TOLLGATE_LOG", "debug");
    proc_ = std::make_unique<child_process>(
        std::vector<std::string>{tollgate_binary(), "--config", path.string()}, env);
    auto line = proc_->wait_for_line("listening on", 20s);
    if (!line) throw std::runtime_error("tollgate did not start: " + proc_->output());
    port_ = port_from_line(*line);
}

std::uint16_t gateway_process::admin_port() {
    if (admin_port_ == 0) {
        auto line = proc_->wait_for_line("admin listening on", 20s);
        if (!line) throw std::runtime_error("tollgate admin did not start: " + proc_->output());
        admin_port_ = port_from_line(*line);
    }
    return admin_port_;
}

int gateway_process::stop(int sig, std::chrono::milliseconds timeout) {
    stopped_ = true;
    return proc_->stop(sig, timeout);
}

test_certs make_test_certs() {
    test_certs c;
    c.dir = make_temp_dir();
    c.ca = c.dir / "ca.pem";
    c.cert = c.dir / "server.pem";
    c.key = c.dir / "server.key";
    c.wrong_cert = c.dir / "wrong.pem";
    c.wrong_key = c.dir / "wrong.key";
    const std::string d = c.dir.string() + "/";
    auto sh = [&](const std::string& cmd) {
        auto r = run_command({"/bin/sh", "-c", "cd " + d + " && " + cmd}, 60s);
        if (r.exit_code != 0)
            throw std::runtime_error("cert setup failed: " + cmd + "\n" + r.output);
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 "
       "-subj '/CN=tollgate test CA' -addext 'basicConstraints=critical,CA:TRUE' "
       "-addext 'keyUsage=critical,keyCertSign,cRLSign'");
    for (const auto& [name, san] :
         {std::pair{"server", "IP:127.0.0.1,DNS:localhost"}, {"wrong", "DNS:wrong.example"}}) {
        const std::string n = name;
        sh("openssl req -newkey rsa:2048 -nodes -keyout " + n + ".key -out " + n +
           ".csr -subj '/CN=" + (n == "server" ? "localhost" : "wrong.example") + "'");
        sh("printf '%s\\n' 'subjectAltName=" + std::string(san) +
           "' 'basicConstraints=CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' "
           "'extendedKeyUsage=serverAuth' > " +
           n + ".ext");
        sh("openssl x509 -req -in " + n + ".csr -CA ca.pem -CAkey ca.key -set_serial " +
           (n == "server" ? "1" : "2") + " -days 3650 -extfile " + n + ".ext -out " + n + ".pem");
    }
    return c;
}

std::string standard_config(std::uint16_t upstream_port, const config_options& o) {
    std::string y;
    y += "server:\n  listen: [\"127.0.0.1:0\"]\n  threads: 2\n" + o.server_extra;
    y += "providers:\n  mock:\n    kind: openai\n    base_url: " + o.scheme + "://" + o.host + ":" +
         std::to_string(upstream_port) + "/v1\n    api_key: " + provider_key + "\n" +
         o.provider_extra;
    y += "models:\n"
         "  gpt-4o-mini:\n    targets: [{provider: mock, model: mock-gpt}]\n"
         "    price: {input_per_mtok: 0.15, output_per_mtok: 0.60}\n"
         "  other-model:\n    targets: [{provider: mock, model: mock-other}]\n" +
         o.models_extra;
    y += std::string("keys:\n") + "  - id: team-a\n    key: " + client_key_a + "\n" +
         "  - id: team-b\n    key: " + client_key_b + "\n    models: [gpt-4o-mini]\n" +
         o.keys_extra;
    y += o.top_extra;
    y += "policies: " + o.policies + "\n";
    return y;
}

std::string chat_body(const std::string& content, bool stream, const std::string& model) {
    return R"({"model":")" + model + R"(","messages":[{"role":"user","content":")" + content +
           R"("}])" + (stream ? R"(,"stream":true)" : "") + "}";
}

header_map auth_headers(const std::string& key) {
    return {{"authorization", "Bearer " + key}};
}

// ---------------------------------------------------------------------------------------
// postgres_server

namespace {

std::string pg_tool(const char* tool) {
    const char* env = std::getenv("TOLLGATE_TEST_PG_BINDIR");
    const std::string dir = env && *env ? env : TOLLGATE_PG_BINDIR;
    if (dir.empty())
        throw std::runtime_error(
            "PostgreSQL server programs not found: install postgresql (deploy/install-deps.sh) "
            "or set TOLLGATE_TEST_PG_BINDIR");
    return dir + "/" + tool;
}

std::string pg_conninfo(std::uint16_t port, const std::string& db) {
    return "host=127.0.0.1 port=" + std::to_string(port) + " user=tollgate dbname=" + db +
           " connect_timeout=5";
}

}  // namespace

postgres_server::postgres_server(bool durable) : dir_(make_temp_dir()), durable_(durable) {
    try {
        if (::geteuid() == 0) {
            run_as_ = "postgres";
            const passwd* pw = ::getpwnam(run_as_.c_str());
            if (!pw)
                throw std::runtime_error(
                    "running as root and there is no `postgres` user to run PostgreSQL as");
            if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
                throw std::runtime_error("chown " + dir_.string() + " failed");
        }
        const auto init =
            run_command({pg_tool("initdb"), "-D", (dir_ / "data").string(), "-U", "tollgate",
                         "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"},
                        120s, {}, run_as_);
        if (init.exit_code != 0) throw std::runtime_error("initdb failed:\n" + init.output);
        // A port from closed_port() may be taken before postgres binds it: try a few.
        for (int attempt = 0; proc_ == nullptr; ++attempt) {
            port_ = closed_port();
            launch();
            if (!proc_ && attempt == 4)
                throw std::runtime_error("postgres did not start:\n" + old_logs_);
        }
        query("CREATE DATABASE tollgate", "postgres");
    } catch (...) {
        if (proc_) proc_->stop(SIGKILL, 10s);
        proc_.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
        throw;
    }
}

postgres_server::~postgres_server() {
    if (proc_) stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

void postgres_server::launch() {
    std::vector<std::string> argv{
        pg_tool("postgres"),  "-D", (dir_ / "data").string(),     "-p", std::to_string(port_), "-k",
        dir_.string(),        "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=40",  "-c",
        "shared_buffers=16MB"};
    if (!durable_) {
        argv.insert(argv.end(), {"-c", "fsync=off", "-c", "full_page_writes=off"});
    }
    auto proc = std::make_unique<child_process>(
        argv, std::vector<std::pair<std::string, std::string>>{}, run_as_);
    const std::string info = pg_conninfo(port_, "postgres");
    bool exited = false;
    const bool ready = poll_until(
        [&] {
            if (proc->wait_exit(0ms)) {
                exited = true;
                return true;
            }
            return PQping(info.c_str()) == PQPING_OK;
        },
        60s, 20ms);
    if (ready && !exited) {
        proc_ = std::move(proc);
        return;
    }
    if (!exited) proc->stop(SIGKILL, 10s);
    old_logs_ += proc->output();
    if (!exited) throw std::runtime_error("postgres did not become ready:\n" + old_logs_);
}

void postgres_server::stop() {
    if (!proc_) return;
    proc_->stop(SIGINT, 60s);  // fast shutdown (SIGKILL after 60 s)
    old_logs_ += proc_->output();
    proc_.reset();
}

void postgres_server::start() {
    if (proc_) return;
    launch();
    if (!proc_) throw std::runtime_error("postgres did not restart:\n" + old_logs_);
}

std::string postgres_server::url(const std::string& db) const {
    return std::string("postgresql://tollgate:") + password +
           "@127.0.0.1:" + std::to_string(port_) + "/" + db;
}

std::string postgres_server::query(const std::string& sql, const std::string& db) const {
    PGconn* c = PQconnectdb(pg_conninfo(port_, db).c_str());
    std::string out;
    std::string error;
    if (PQstatus(c) != CONNECTION_OK) {
        error = std::string("connect: ") + PQerrorMessage(c);
    } else {
        PGresult* r = PQexec(c, sql.c_str());
        const auto st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            error = PQresultErrorMessage(r);
        else if (PQntuples(r) > 0 && PQnfields(r) > 0)
            out = PQgetvalue(r, 0, 0);
        PQclear(r);
    }
    PQfinish(c);
    if (!error.empty()) throw std::runtime_error("postgres_server::query(" + sql + "): " + error);
    return out;
}

std::string postgres_server::log() const {
    return old_logs_ + (proc_ ? proc_->output() : std::string());
}

}  // namespace tollgate::test
