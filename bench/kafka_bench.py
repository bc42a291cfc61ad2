#!/usr/bin/env python3
"""Kafka clients' throughput against Eddy's Kafka listener, beside another Kafka-protocol broker
and beside the log's own direct append figures.

For each value size (100 B and 1 KiB by default) and broker:

  produce   `--producers` confluent-kafka producers (librdkafka) in separate processes write
            `--mib` MiB of values to one partition of a new topic, acks=all, linger.ms=5, no
            compression, 8-byte keys as `eddy bench log` writes; the clock runs from the first
            produce() to the last acknowledgement (flush).
  consume   one confluent-kafka consumer, assigned the partition from offset 0 (no group),
            reads every record back; the clock runs from assign() to the last record. Its
            prefetch queue may hold a million records (`queued.min.messages`): with the
            default 100,000, librdkafka pauses fetching for `fetch.queue.backoff.ms` (1 s)
            whenever a fetch overfills it, and a fast broker is measured by that pause.
            (noida-db ignores a fetch's byte limits and answers with the whole partition at
            once, so its consumer figure is of one huge response.)

For each phase the broker's CPU time is read from /proc, so the last columns say how much of
the machine the broker itself used: on a small machine the clients take most of it, and the
throughput is theirs.

Brokers:
  eddy      `eddy --fsync POLICY broker` (a release build) on a scratch data directory: a
            produce is acknowledged once the fsync policy makes it durable.
  noida     the Kafka service of PyPI's `noida-db==0.2.3` (`noida-db start --only kafka`), on
            its own scratch directory, with its own durability rules.

Then `eddy bench log --policies POLICY` appends the same volume directly to a partition (no
network, no protocol), and a column gives Eddy's Kafka produce as a share of it.

    python3 bench/kafka_bench.py [--eddy target/release/eddy] [--mib 128] [--fsync 5ms]
                                 [--value-sizes 100,1024] [--producers 2] [--no-noida]
                                 [--produce-batch]
"""

import argparse
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the broker exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on 127.0.0.1:{port}")


def cpu_seconds(pid):
    """User and system CPU time of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Eddy:
    name = "eddy"

    def __init__(self, binary, fsync, scratch):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--data-dir", os.path.join(scratch, "eddy"), "--fsync", fsync,
             "broker", "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)
        self.pid = self.proc.pid

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Noida:
    name = "noida"

    def __init__(self, scratch):
        exe = shutil.which("noida-db")
        if exe is None:
            sys.exit("noida-db is not installed: pip install noida-db==0.2.3 (or pass --no-noida)")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "start", "--data-dir", os.path.join(scratch, "noida"), "--only", "kafka",
             "--kafka-port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)
        # `noida-db` is a Python wrapper that runs the server binary as its child.
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            children = f.read().split()
        self.pid = int(children[0]) if children else self.proc.pid

    def stop(self):
        # The wrapper does not pass its signal on: stop the server binary itself too, as
        # Ctrl-C would, and kill it if it has not stopped within ten seconds.
        if self.pid != self.proc.pid:
            try:
                os.kill(self.pid, signal.SIGINT)
                deadline = time.time() + 10
                while os.path.exists(f"/proc/{self.pid}") and time.time() < deadline:
                    time.sleep(0.1)
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def produce_part(bootstrap, topic, value_size, count, batch_api, results):
    """One producer process: `count` records; reports (start, end) wall-clock times."""
    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1 << 20,
    })
    # Values differ from one another (as `eddy bench log`'s do); built before the clock starts.
    values = [bytes((i * 31 + j) % 256 for j in range(value_size)) for i in range(256)]
    key = b"\0" * 8
    failed = []

    def on_delivery(err, _msg):
        if err is not None:
            failed.append(err)

    # produce_batch() hands librdkafka a list of records in one call: no Python work per
    # record, and no delivery callback (the run checks the partition's end offset instead).
    chunk = [{"value": values[i & 255], "key": key} for i in range(10_000)]
    start = time.time()
    if batch_api:
        sent = 0
        while sent < count:
            part = chunk[:min(len(chunk), count - sent)]
            while True:
                try:
                    queued = p.produce_batch(topic, part, partition=0)
                    break
                except BufferError:
                    p.poll(0.005)
            if queued < len(part):
                p.poll(0.005)  # the queue filled midway: the next call sends the rest
            sent += queued
            p.poll(0)
    else:
        for i in range(count):
            while True:
                try:
                    p.produce(topic, values[i & 255], key, partition=0, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.005)
            if i & 4095 == 0:
                p.poll(0)
    left = p.flush(120)
    end = time.time()
    results.put((start, end, left + len(failed)))


def measure_produce(bootstrap, topic, value_size, total, producers, batch_api):
    results = mp.Queue()
    per = total // producers
    procs = [mp.Process(target=produce_part,
                        args=(bootstrap, topic, value_size, per, batch_api, results))
             for _ in range(producers)]
    for p in procs:
        p.start()
    got = [results.get() for _ in procs]
    for p in procs:
        p.join()
    lost = sum(g[2] for g in got)
    if lost:
        sys.exit(f"{lost} records were not acknowledged")
    seconds = max(g[1] for g in got) - min(g[0] for g in got)
    return per * producers, seconds


def measure_consume(bootstrap, topic, count):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "kafka-bench",  # required by the client; nothing is committed
        "enable.auto.commit": False,
        "queued.min.messages": 1_000_000,
        # noida-db answers a fetch with everything the partition holds, whatever the fetch's
        # byte limits; the client must take responses that large (Eddy keeps to the limits).
        "receive.message.max.bytes": 1 << 30,
    })
    # Every record was acknowledged (produce_batch() runs have no delivery callbacks).
    end = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    if end != count:
        sys.exit(f"the partition holds {end} records, not {count}")
    start = time.time()
    c.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    deadline = start + 300
    while seen < count and time.time() < deadline:
        for m in c.consume(10_000, 1.0):
            if m.error() is None:
                seen += 1
    seconds = time.time() - start
    c.close()
    if seen < count:
        sys.exit(f"consumed {seen} of {count}")
    return seconds


def run_broker(broker, sizes, mib, producers, batch_api):
    bootstrap = f"127.0.0.1:{broker.port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    rows = {}
    for size in sizes:
        topic = f"bench-{size}"
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result()
        total = (mib << 20) // size
        cpu = cpu_seconds(broker.pid)
        count, produce_s = measure_produce(bootstrap, topic, size, total, producers, batch_api)
        produce_cpu = cpu_seconds(broker.pid) - cpu
        cpu = cpu_seconds(broker.pid)
        consume_s = measure_consume(bootstrap, topic, count)
        consume_cpu = cpu_seconds(broker.pid) - cpu
        rows[size] = (count / produce_s, produce_cpu / produce_s,
                      count / consume_s, consume_cpu / consume_s)
    return rows


def direct_append(binary, fsync, sizes, mib, scratch):
    """`eddy bench log`'s append records/s for each value size, at the same fsync policy."""
    out = subprocess.run(
        [binary, "bench", "log", "--dir", os.path.join(scratch, "direct"), "--mib", str(mib),
         "--policies", fsync, "--value-sizes", ",".join(map(str, sizes))],
        check=True, capture_output=True, text=True).stdout
    rates = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+)\s+(\d+)", line)
        if m:
            rates[int(m.group(1))] = float(m.group(3))
    return rates


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eddy", default="target/release/eddy")
    ap.add_argument("--mib", type=int, default=128, help="MiB of values per run")
    ap.add_argument("--fsync", default="5ms", help="Eddy's fsync policy: always, never, 5ms ...")
    ap.add_argument("--value-sizes", default="100,1024")
    ap.add_argument("--producers", type=int, default=2, help="producer processes")
    ap.add_argument("--no-noida", action="store_true")
    ap.add_argument("--produce-batch", action="store_true",
                    help="produce with produce_batch() (lists of 10,000) instead of produce()")
    args = ap.parse_args()
    sizes = [int(s) for s in args.value_sizes.split(",")]
    scratch = tempfile.mkdtemp(prefix="eddy-kafka-bench-")
    try:
        results = {}
        eddy = Eddy(args.eddy, args.fsync, scratch)
        try:
            results["eddy"] = run_broker(eddy, sizes, args.mib, args.producers, args.produce_batch)
        finally:
            eddy.stop()
        if not args.no_noida:
            noida = Noida(scratch)
            try:
                results["noida"] = run_broker(noida, sizes, args.mib, args.producers, args.produce_batch)
            finally:
                noida.stop()
        direct = direct_append(args.eddy, args.fsync, sizes, args.mib, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    api = "produce_batch()" if args.produce_batch else "produce()"
    print(f"{args.mib} MiB of values per run, {args.producers} producer processes ({api}), "
          f"acks=all, linger.ms=5; Eddy's fsync policy {args.fsync}")
    print(f"{'broker':>6}  {'value':>6}  {'produce rec/s':>13}  {'MB/s':>6}  {'% direct':>8}  "
          f"{'broker cores':>12}  {'consume rec/s':>13}  {'MB/s':>6}  {'broker cores':>12}")
    for name, rows in results.items():
        for size, (produce, produce_cores, consume, consume_cores) in rows.items():
            share = f"{100 * produce / direct[size]:.0f}%" if name == "eddy" and size in direct else "-"
            print(f"{name:>6}  {size:>6}  {produce:>13.0f}  {produce * size / 1e6:>6.1f}  {share:>8}  "
                  f"{produce_cores:>12.2f}  {consume:>13.0f}  {consume * size / 1e6:>6.1f}  "
                  f"{consume_cores:>12.2f}")
    print("broker cores: the broker process's CPU seconds per second of the phase")
    for size in sizes:
        if size in direct:
            print(f"direct append (eddy bench log, {args.fsync}), {size} B values: "
                  f"{direct[size]:.0f} rec/s")


if __name__ == "__main__":
    main()
