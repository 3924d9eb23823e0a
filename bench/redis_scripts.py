#!/usr/bin/env python3
"""Redis's own CPU per request for the shared-state scripts, alone on a core.

bench/state.sh measures the whole gateway with Redis beside wrk and the mock, where
Redis's CPU time also pays for their interference. This drives the admission and settle
scripts of policies/state/shared_state.cpp the way the gateway does (one API key, ~64
requests in flight, settles in batches of 8, commands pipelined 16 deep) against a fresh
redis-server pinned to its own CPU, and reports redis-server's CPU time per request.
Several versions side by side, alternated, medians:

    bench/redis_scripts.py                 # the working tree
    bench/redis_scripts.py HEAD~1 HEAD     # two commits (git show REV:path)
    bench/redis_scripts.py HEAD .          # the last commit and the working tree
    ROUNDS=5 N=100000 bench/redis_scripts.py

Admission scripts that take a batch (several requests of one key per call, as a worker
sends those that arrive together) get BATCH requests per call; older ones one.

Env: ROUNDS [4], N [60000] requests per run, BATCH [4], REDIS_CPU [1], CLIENT_CPU [0].
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SOURCE = "policies/state/shared_state.cpp"
ROUNDS = int(os.environ.get("ROUNDS", "4"))
N = int(os.environ.get("N", "60000"))
BATCH = int(os.environ.get("BATCH", "4"))
REDIS_CPU = os.environ.get("REDIS_CPU", "1")
CLIENT_CPU = int(os.environ.get("CLIENT_CPU", "0"))
KEYS = [f"tg:{{k}}:{p}" for p in "rlbfsq"]


def scripts(rev):
    """The admission and settle scripts (Lua) as the gateway sends them, from `rev`."""
    if rev is None:
        with open(os.path.join(ROOT, SOURCE)) as f:
            src = f.read()
    else:
        src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:{SOURCE}"], check=True,
                             capture_output=True, text=True).stdout

    def raw(start):
        i = src.index(start) + len(start)
        return src[i:src.index(')LUA"', i)]

    common = raw('lua_common = R"LUA(')
    return (common + raw('admit_lua = std::string(lua_common) + R"LUA('),
            common + raw('settle_lua = std::string(lua_common) + R"LUA('))


def enc(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")

    def reply(self):
        line = self.f.readline()
        kind = line[:1]
        if kind == b"-":
            raise RuntimeError(line.decode().strip())
        if kind in b"+:":
            return line[1:].strip()
        if kind == b"$":
            n = int(line[1:])
            return self.f.read(n + 2)[:-2] if n >= 0 else None
        if kind == b"*":
            return [self.reply() for _ in range(int(line[1:]))]
        raise RuntimeError(f"not RESP: {line!r}")

    def call(self, *args):
        self.s.sendall(enc(list(args)))
        return self.reply()


def cpu_seconds(pid):
    v = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(admit_src, settle_src):
    """Redis CPU µs per request (an admission and an eighth of a settle batch)."""
    port = free_port()
    work = tempfile.mkdtemp(prefix="tollgate-redis-scripts.")
    redis = subprocess.Popen(["taskset", "-c", REDIS_CPU, "redis-server", "--port", str(port),
                              "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", work], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                c = Conn(port)
                break
            except OSError:
                time.sleep(0.05)  # pacing the probe while redis-server starts
        else:
            raise RuntimeError("redis-server did not start")
        sha_a = c.call("SCRIPT", "LOAD", admit_src).decode()
        sha_s = c.call("SCRIPT", "LOAD", settle_src).decode()
        seq = 0

        # ARGV[14]: the instance's ended requests whose settles are on their way.
        ended = "for j = 15, #ARGV, 3" in admit_src
        batched = ended or "for j = 14, #ARGV, 3" in admit_src
        marked = "for i = 4, #ARGV, 7" in settle_src

        def admit(ids):
            if batched:
                # lease, rpm, tpm, concurrency, budget part, token cap, nano cap, period
                # start, seed tokens, seed nano, period, instance, shared, [ended requests];
                # then per request rid, estimate, estimated nano
                args = ["EVALSHA", sha_a, 6, *KEYS, 30000, 10**9, 10**12, 10**6, 1, -1,
                        10**15, 0, 0, 0, "total", "bench", 0]
                if ended:
                    # The next settle batch's 8 requests: ended, not settled yet (the
                    # script reads them only when a check would refuse without them).
                    first = ids[0]
                    args.append(",".join(f"bench:{r} 120 1500"
                                         for r in range(max(0, first - 64), max(0, first - 56))))
                for i in ids:
                    args += [f"bench:{i}", 100, 2000]
                return [enc(args)]
            # rid, lease, rpm, tpm, concurrency, estimate, budget part, token cap, nano cap,
            # period start, estimated nano, seed tokens, seed nano, period, instance, shared
            return [enc(["EVALSHA", sha_a, 6, *KEYS, f"bench:{i}", 30000, 10**9, 10**12, 10**6,
                         100, 1, -1, 10**15, 0, 2000, 0, 0, "total", "bench", 0]) for i in ids]

        def settle(rids):
            nonlocal seq
            args = ["EVALSHA", sha_s, 6, *KEYS, "bench", 30000, 0]
            for r in rids:
                seq += 1
                args += [seq, f"bench:{r}", 120, 1500, 1, 1]
                if marked:
                    args.append(0)  # no renewal of it went unanswered
            return enc(args)

        def drive(first, n):
            buf, pending = [], 0
            step = BATCH if batched else 1
            for i in range(first, first + n):
                if (i - first) % step == 0:
                    calls = admit(range(i, min(i + step, first + n)))
                    buf += calls
                    pending += len(calls)
                if i - first >= 64 and (i - first) % 8 == 0:
                    buf.append(settle(range(i - 71, i - 63)))
                    pending += 1
                if len(buf) >= 16 or i == first + n - 1:
                    c.s.sendall(b"".join(buf))
                    buf = []
                    for _ in range(pending):
                        c.reply()
                    pending = 0

        drive(0, 5000)  # warm: the window, the holds and the settled set exist
        t0 = cpu_seconds(redis.pid)
        drive(10**6, N)
        return (cpu_seconds(redis.pid) - t0) * 1e6 / N
    finally:
        redis.terminate()
        redis.wait()
        subprocess.run(["rm", "-rf", work])


def main():
    os.sched_setaffinity(0, {CLIENT_CPU})
    revs = [None if a == "." else a for a in sys.argv[1:]] or [None]
    versions = [(rev or "working tree", *scripts(rev)) for rev in revs]
    results = {name: [] for name, _, _ in versions}
    for r in range(ROUNDS):
        for name, a, s in versions:
            us = one_run(a, s)
            results[name].append(us)
            print(f"[bench] round {r + 1}/{ROUNDS} {name}: {us:.1f} us/request", file=sys.stderr)
    print("| scripts | Redis CPU µs/request (median) | runs |")
    print("|---|---:|---|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(runs):.1f} | "
              f"{' '.join(f'{x:.1f}' for x in runs)} |")


if __name__ == "__main__":
    main()
