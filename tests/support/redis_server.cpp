#include "tests/support/redis_server.hpp"

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <stdexcept>

#include "tests/support/fixtures.hpp"

namespace tollgate::test {

using namespace std::chrono_literals;

namespace {

// The program's path from PATH (child_process executes a path, it does not search).
std::string which(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
    for (std::size_t start = 0; start <= dirs.size();) {
        auto end = dirs.find(':', start);
        if (end == std::string::npos) end = dirs.size();
        const auto candidate = std::filesystem::path(dirs.substr(start, end - start)) / name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
        start = end + 1;
    }
    throw std::runtime_error(name + " not found in PATH (apt-get install redis-server)");
}

}  // namespace

redis_server::redis_server() : dir_(make_temp_dir()) {
    start_on_free_port();
}

redis_server::redis_server(const test_certs& certs)
    : dir_(make_temp_dir()), tls_(true), cert_(certs.cert), key_(certs.key), ca_(certs.ca) {
    start_on_free_port();
}

void redis_server::start_on_free_port() {
    // A port below the ephemeral range that nothing listens on; if another process of
    // the suite takes it between the check and redis's bind, try another one.
    for (int attempt = 0; attempt < 5; ++attempt) {
        port_ = closed_port();
        try {
            start();
            return;
        } catch (const std::exception&) {
            if (attempt == 4) throw;
        }
    }
}

redis_server::~redis_server() {
    if (proc_) stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

void redis_server::start() {
    if (proc_) return;
    std::vector<std::string> argv{which("redis-server"),
                                  "--bind",
                                  "127.0.0.1",
                                  "--save",
                                  "",
                                  "--appendonly",
                                  "no",
                                  "--dir",
                                  dir_.string(),
                                  "--protected-mode",
                                  "no"};
    if (tls_) {
        for (const auto& a :
             {std::string("--port"), std::string("0"), std::string("--tls-port"),
              std::to_string(port_), std::string("--tls-cert-file"), cert_.string(),
              std::string("--tls-key-file"), key_.string(), std::string("--tls-ca-cert-file"),
              ca_.string(), std::string("--tls-auth-clients"), std::string("no")})
            argv.push_back(a);
    } else {
        argv.push_back("--port");
        argv.push_back(std::to_string(port_));
    }
    proc_ = std::make_unique<child_process>(argv);
    if (!proc_->wait_for_line("Ready to accept connections", 20s)) {
        const auto out = proc_->output();
        proc_->stop(SIGKILL, 5s);
        proc_.reset();
        throw std::runtime_error("redis-server did not start: " + out);
    }
}

void redis_server::pause() {
    if (proc_) proc_->signal(SIGSTOP);
}

void redis_server::resume() {
    if (proc_) proc_->signal(SIGCONT);
}

void redis_server::stop() {
    if (!proc_) return;
    proc_->signal(SIGCONT);
    proc_->stop(SIGTERM, 20s);
    proc_.reset();
}

std::string redis_server::cli(const std::vector<std::string>& args) const {
    std::vector<std::string> argv{which("redis-cli"), "-h", "127.0.0.1", "-p",
                                  std::to_string(port_)};
    if (tls_) {
        argv.push_back("--tls");
        argv.push_back("--cacert");
        argv.push_back(ca_.string());
    }
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_command(argv, 10s);
    while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == '\r'))
        r.output.pop_back();
    return r.output;
}

}  // namespace tollgate::test
