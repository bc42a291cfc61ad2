#!/usr/bin/env python3
"""Eddy and Flink side by side: the same generated CSV through the same three queries.

The input is `k,v,ts` lines: 100 keys, one row per millisecond of event time, v in 0..99.
Queries, in ksqlDB's SQL for Eddy and Flink SQL for Flink:

  final    a one-minute tumbling COUNT and SUM by key, emitted once per closed window
           (Eddy: EMIT FINAL; Flink: a window TVF aggregate, which emits on the watermark)
  changes  the same aggregate, updated per record
           (Eddy: EMIT CHANGES; Flink: an unbounded GROUP BY key and window start)
  filter   a filter and projection (WHERE v > 50, v * 2)

Eddy: a release build of `eddy`, the CSV produced into a two-partition topic of the embedded
log (default fsync policy), then each query by `eddy -e` over what the topic holds; the time is
the whole command, from process start to exit. Flink: PyFlink's local mini-cluster
(`pip install apache-flink==2.3.0`, Java 17), filesystem CSV source, blackhole sink,
parallelism 2; the time is the job's, from submit to finish (the mini-cluster's start before
it is not counted). Both sides print records per second of input; one run prints both.

    python3 bench/side_by_side.py [--lines 10000000] [--no-flink] [--eddy target/release/eddy]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = 100
BASE_TS = 1_700_000_000_000

EDDY_STREAM = (
    "CREATE STREAM ev (k STRING, v BIGINT, ts BIGINT) "
    "WITH (kafka_topic='events', value_format='DELIMITED', timestamp='ts');"
)
EDDY_QUERIES = {
    "final": "CREATE TABLE w_final AS SELECT k, COUNT(*) AS cnt, SUM(v) AS s FROM ev "
    "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY k EMIT FINAL;",
    "changes": "CREATE TABLE w_changes AS SELECT k, COUNT(*) AS cnt, SUM(v) AS s FROM ev "
    "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY k EMIT CHANGES;",
    "filter": "CREATE STREAM f AS SELECT k, v * 2 AS v2 FROM ev WHERE v > 50 EMIT CHANGES;",
}

FLINK_SOURCE = """
CREATE TABLE ev (
  k STRING, v BIGINT, ts BIGINT,
  rt AS TO_TIMESTAMP_LTZ(ts, 3),
  WATERMARK FOR rt AS rt
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'csv')
"""
FLINK_QUERIES = {
    "final": (
        "CREATE TABLE sink_final (k STRING, ws TIMESTAMP(3), cnt BIGINT, s BIGINT) "
        "WITH ('connector' = 'blackhole')",
        "INSERT INTO sink_final SELECT k, window_start, COUNT(*), SUM(v) "
        "FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(rt), INTERVAL '1' MINUTE)) "
        "GROUP BY k, window_start, window_end",
    ),
    "changes": (
        "CREATE TABLE sink_changes (k STRING, ws BIGINT, cnt BIGINT, s BIGINT) "
        "WITH ('connector' = 'blackhole')",
        "INSERT INTO sink_changes SELECT k, ts / 60000 * 60000 AS ws, COUNT(*), SUM(v) "
        "FROM ev GROUP BY k, ts / 60000 * 60000",
    ),
    "filter": (
        "CREATE TABLE sink_filter (k STRING, v2 BIGINT) WITH ('connector' = 'blackhole')",
        "INSERT INTO sink_filter SELECT k, v * 2 FROM ev WHERE v > 50",
    ),
}


def generate(path, lines):
    """Writes the CSV in blocks: a Python loop per line would dominate the setup time."""
    block = 100_000
    with open(path, "w") as f:
        for start in range(0, lines, block):
            end = min(lines, start + block)
            f.write(
                "".join(
                    f"k{i % KEYS},{(i * 7919) % 100},{BASE_TS + i}\n"
                    for i in range(start, end)
                )
            )


def timed(argv, **kw):
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def run_eddy(eddy, csv, lines, workdir):
    data = os.path.join(workdir, "eddy-data")
    base = [eddy, "--data-dir", data]
    subprocess.run(base + ["topic", "create", "events", "--partitions", "2"], check=True,
                   stdout=subprocess.DEVNULL)
    with open(csv, "rb") as f:
        produce = timed(base + ["produce", "events"], stdin=f)
    results = {"produce": produce}
    subprocess.run(base + ["-e", EDDY_STREAM], check=True, stdout=subprocess.DEVNULL)
    for name, sql in EDDY_QUERIES.items():
        results[name] = timed(base + ["-e", "SET 'auto.offset.reset'='earliest'; " + sql])
    return results


def run_flink(csv):
    try:
        from pyflink.table import EnvironmentSettings, TableEnvironment
    except ImportError:
        print("pyflink is not installed: pip install apache-flink==2.3.0 (or pass --no-flink)",
              file=sys.stderr)
        return None
    results = {}
    for name, (sink, insert) in FLINK_QUERIES.items():
        env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
        env.get_config().set("parallelism.default", "2")
        env.execute_sql(FLINK_SOURCE.format(path=csv))
        env.execute_sql(sink)
        start = time.perf_counter()
        env.execute_sql(insert).wait()
        results[name] = time.perf_counter() - start
    return results


def rate(lines, seconds):
    return f"{lines / seconds / 1e6:6.2f} M rows/s ({seconds:6.1f} s)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--eddy", default=None, help="the eddy binary (default: a release build)")
    ap.add_argument("--no-flink", action="store_true")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a new temporary one)")
    args = ap.parse_args()

    eddy = args.eddy
    if eddy is None:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "eddy-cli"], cwd=REPO,
                       check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
        eddy = os.path.join(target, "release", "eddy")

    workdir = args.dir or tempfile.mkdtemp(prefix="eddy-vs-flink-")
    os.makedirs(workdir, exist_ok=True)
    try:
        csv = os.path.join(workdir, "events.csv")
        print(f"generating {args.lines:,} lines in {csv}", file=sys.stderr)
        generate(csv, args.lines)
        print("eddy ...", file=sys.stderr)
        eddy_results = run_eddy(eddy, csv, args.lines, workdir)
        flink_results = None
        if not args.no_flink:
            print("flink ...", file=sys.stderr)
            flink_results = run_flink(csv)
        size = os.path.getsize(csv)
        print(f"\n{args.lines:,} lines, {size / 1e6:.0f} MB, {KEYS} keys, 2 partitions / parallelism 2")
        print(f"{'':10} {'eddy':>32}  {'flink':>32}")
        for name in ["produce"] + list(EDDY_QUERIES):
            e = rate(args.lines, eddy_results[name])
            f = "-"
            if flink_results and name in flink_results:
                f = rate(args.lines, flink_results[name])
            print(f"{name:10} {e:>32}  {f:>32}")
    finally:
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
