"""`make bench`: what ray-iap-proxy costs, measured in one run against the same loopback stub of Ray.

Targets, each in front of the same aiohttp stub (bench/upstream.py, its own process):

    direct   wrk -> stub                      the ceiling: one core of aiohttp answering
    proxy    wrk -> ray-iap-proxy -> stub     `python -m proxy serve --config ...`, a real process
    apache   wrk -> Apache+mod_oauth2 -> stub the peer (bench/peers/apache/start.sh, PROCESSES=1)

Layout on a 2-core machine (peers.md section 4): the system under test (the proxy, Apache, or for
`direct` the stub itself) is pinned to core 0; wrk, this script and the stub (when it is upstream of
a proxy) to core 1. The stub is moved between cores with sched_setaffinity, so every target talks to
the same stub process.

Measured: requests/s and p50/p90/p99 latency (wrk + a Lua script) for `GET /api/version` (a ~128 B
JSON answer) with one hot token at each concurrency; the same with a fresh token per request (every
request a cache miss: full ES256 verification) at the miss concurrencies; bulk MiB/s for a 1 MiB
download and a 16 MiB upload (aiohttp client); and in-process micro-timings of token verification.
CPU seconds used by the system under test are read from /proc, so a busy machine shows as less CPU
for the target instead of silently lower numbers.

Environment (all optional):
    BENCH_SECONDS=10        seconds per wrk point
    BENCH_CONCURRENCY=1,32,64
    BENCH_MISS_CONCURRENCY=1,32   fresh-token points ("" to skip)
    BENCH_WARMUP=1          seconds of warm-up per target before its first point
    BENCH_BULK_SECONDS=3    time budget for each bulk transfer measurement
    BENCH_TARGETS=direct,proxy,apache
    BENCH_APACHE_PEER=DIR   where start.sh/stop.sh live (default bench/peers/apache)
    BENCH_NICE=-10          scheduling priority of this run's processes (root only; 0 leaves it). Linux
                            shares CPU between sessions ("autogroups") first, so this sets the nice
                            value of the autogroup of this script (restored at the end) and of
                            Apache's (it daemonizes into its own session)
    BENCH_KEEP=1            keep the run directory under /tmp (logs, configs)
    BENCH_PROFILE=1         also sample the proxy with py-spy during an extra cached c=32 point and
                            list its hot spots (bench/results/proxy-profile.raw, latest.json "profile")

Writes bench/results/latest.json, bench/results/latest.md, bench/results/*.raw (wrk output, ignored
by git), docs/img/bench.svg and, where rsvg-convert exists, docs/img/bench.png.

Run it as `python -m bench` (what `make bench` does). The modules, by concern:

    settings    the env knobs above, paths, the fixed request shapes, the log line
    procs       processes started and stopped by pid, core pinning, CPU accounting from /proc
    upstream    the stub of Ray (`python -m bench.upstream`, its own process)
    peers       the proxy's config and the Apache peer, each yielding a Target
    tokens      the pool of fresh tokens, minted in parallel
    wrk         one wrk point (Lua scripts, Target, Point) and the sweep over concurrencies
    bulk        1 MiB downloads and 16 MiB uploads through a target
    micro       in-process timings of the proxy's own token verification (the only user of its internals)
    profiling   py-spy samples of the proxy and their summary
    report      latest.md and the printed table; chart draws docs/img/bench.svg
    main        the run: preflight, start everything, measure, stop everything, write the results

This package imports nothing on purpose: the stub (`python -m bench.upstream`) loads only what it uses.
"""
