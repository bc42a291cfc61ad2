"""A confluent-kafka group of two against Eddy: the partitions split between them, the one
left takes over when the other leaves, and a new member resumes from the commits.
Usage: confluent_group.py BOOTSTRAP"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bs = sys.argv[1]

def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")

admin = AdminClient({"bootstrap.servers": bs})  # kept: results need the live handle
admin.create_topics([NewTopic("grouped", num_partitions=4, replication_factor=1)])["grouped"].result()
p = Producer({"bootstrap.servers": bs})
def produce(lo, hi):
    for i in range(lo, hi):
        p.produce("grouped", key=str(i), value=str(i), partition=i % 4)
    check(p.flush(10) == 0, "produced")
produce(0, 400)

def member(name):
    return Consumer({"bootstrap.servers": bs, "group.id": "pair", "client.id": name,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 300})

assigned = {}
def on_assign(name):
    return lambda consumer, partitions: assigned.__setitem__(name, sorted(tp.partition for tp in partitions))

a, b = member("a"), member("b")
a.subscribe(["grouped"], on_assign=on_assign("a"))
b.subscribe(["grouped"], on_assign=on_assign("b"))
def caught_up(c, end):
    """Whether c holds partitions and has read each to `end`."""
    parts = c.assignment()
    return bool(parts) and all(tp.offset == end for tp in c.position(parts))

# Until the group settles both members may read a partition (the first to join reads all four,
# then gives two up with nothing committed, and they are read again): at least once, as in
# Kafka. So read until each member holds its share and has read it to the end.
seen = {"a": [], "b": []}
deadline = time.time() + 60
while time.time() < deadline and not (
        len(a.assignment()) + len(b.assignment()) == 4
        and caught_up(a, 100) and caught_up(b, 100)):
    for name, c in (("a", a), ("b", b)):
        m = c.poll(0.1)
        if m is not None and m.error() is None:
            seen[name].append(int(m.value()))
both = seen["a"] + seen["b"]
check(set(both) == set(range(400)), f"every record read: {len(set(both))}")
check(seen["a"] and seen["b"], f"both members got partitions: {assigned}")
check(sorted(assigned["a"] + assigned["b"]) == [0, 1, 2, 3], f"partitions split: {assigned}")
a.commit(asynchronous=False)
b.commit(asynchronous=False)

# b leaves: once the group has settled again, a holds all four partitions and reads on from
# b's commits, each record exactly once.
b.close()
deadline = time.time() + 60
while len(a.assignment()) < 4 and time.time() < deadline:
    a.poll(0.1)
check(assigned["a"] == [0, 1, 2, 3], f"a holds every partition: {assigned}")
produce(400, 480)
after = []
deadline = time.time() + 60
while not caught_up(a, 120) and time.time() < deadline:
    m = a.poll(0.1)
    if m is not None and m.error() is None:
        after.append(int(m.value()))
check(sorted(after) == list(range(400, 480)), f"a took over b's partitions: {after}")
a.commit(asynchronous=False)
committed = a.committed([TopicPartition("grouped", i) for i in range(4)], timeout=10)
check([tp.offset for tp in committed] == [120] * 4, f"committed: {committed}")
a.close()

# A new member of the group starts from the commits: nothing before them again.
produce(480, 484)
c = member("c")
c.subscribe(["grouped"])
resumed = []
deadline = time.time() + 60
while len(resumed) < 4 and time.time() < deadline:
    m = c.poll(0.1)
    if m is not None and m.error() is None:
        resumed.append(int(m.value()))
check(sorted(resumed) == [480, 481, 482, 483], f"resumed after the commits: {resumed}")
c.close()
print("ok")
