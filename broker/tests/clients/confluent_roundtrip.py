"""confluent-kafka (librdkafka) against Eddy: admin, produce with every codec, idempotent and
plain, and consume back byte for byte. Usage: confluent_roundtrip.py BOOTSTRAP"""
import sys

from confluent_kafka import Consumer, Producer, TopicPartition, TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                  NewPartitions, NewTopic)

bs = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bs})

def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")

# Admin: create (with Kafka config names), list, describe, grow, delete.
futures = admin.create_topics([
    NewTopic("rt", num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"}),
    NewTopic("stamped", num_partitions=1, replication_factor=1, config={"message.timestamp.type": "LogAppendTime"}),
    NewTopic("doomed", num_partitions=1, replication_factor=1),
])
for f in futures.values():
    f.result()
try:
    admin.create_topics([NewTopic("rt", num_partitions=1, replication_factor=1)])["rt"].result()
    check(False, "creating an existing topic fails")
except Exception as e:
    check("TOPIC_ALREADY_EXISTS" in str(e), f"TOPIC_ALREADY_EXISTS, got {e}")
try:
    admin.create_topics([NewTopic("bad", num_partitions=1, replication_factor=1, config={"no.such": "1"})])["bad"].result()
    check(False, "an unknown config is refused")
except Exception as e:
    check("INVALID_CONFIG" in str(e), f"INVALID_CONFIG, got {e}")
md = admin.list_topics(timeout=10)
check({"rt", "stamped", "doomed"} <= set(md.topics), f"topics listed: {sorted(md.topics)}")
check(len(md.topics["rt"].partitions) == 3, "3 partitions")
check(md.brokers[0].host == "127.0.0.1", f"advertised host {md.brokers[0].host}")
configs = admin.describe_configs([ConfigResource("topic", "rt")])
for f in configs.values():
    described = {k: v.value for k, v in f.result().items()}
check(described["retention.ms"] == "3600000", f"retention.ms described: {described}")
check(described["cleanup.policy"] == "delete", "cleanup.policy")
change = ConfigResource("topic", "rt", incremental_configs=[
    ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
for f in admin.incremental_alter_configs([change]).values():
    f.result()
for f in admin.describe_configs([ConfigResource("topic", "rt")]).values():
    altered = {k: v.value for k, v in f.result().items()}
check(altered["retention.ms"] == "7200000", f"retention.ms altered: {altered}")
admin.create_partitions([NewPartitions("doomed", 2)])["doomed"].result()
check(len(admin.list_topics(timeout=10).topics["doomed"].partitions) == 2, "grown to 2 partitions")
admin.delete_topics(["doomed"])["doomed"].result()
check("doomed" not in admin.list_topics(timeout=10).topics, "deleted")

# Produce: every codec, idempotent and not; keys, values, duplicate header names, nulls,
# explicit timestamps.
expected = {}
n = 0
for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    for idempotent in [False, True]:
        p = Producer({"bootstrap.servers": bs, "compression.type": codec, "enable.idempotence": idempotent,
                      "acks": "all", "linger.ms": 5})
        errors = []
        for i in range(200):
            key = f"{codec}-{idempotent}-{i}".encode()
            value = None if i % 50 == 7 else (f"value {i} ".encode() * (i % 5 + 1))
            headers = [("h", b"1"), ("h", b"2"), ("empty", b""), ("null", None)]
            ts = 1_700_000_000_000 + n
            p.produce("rt", key=key, value=value, headers=headers, timestamp=ts,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
            expected[key] = (value, ts)
            n += 1
        left = p.flush(30)
        check(left == 0 and not errors, f"{codec} idempotent={idempotent}: {left} unsent, errors {errors[:3]}")

# Consume every partition from the start, without a group.
c = Consumer({"bootstrap.servers": bs, "group.id": "unused", "enable.auto.commit": False})
c.assign([TopicPartition("rt", p, 0) for p in range(3)])
got = {}
while len(got) < len(expected):
    batch = c.consume(500, timeout=10)
    check(batch, f"consumed {len(got)} of {len(expected)} before running dry")
    for m in batch:
        check(m.error() is None, f"consume error {m.error()}")
        check(m.key() not in got, f"no duplicates ({m.key()})")
        got[m.key()] = m
for key, (value, ts) in expected.items():
    m = got[key]
    check(m.value() == value, f"value of {key}")
    check(m.timestamp() == (TIMESTAMP_CREATE_TIME, ts), f"timestamp of {key}: {m.timestamp()}")
    check(m.headers() == [("h", b"1"), ("h", b"2"), ("empty", b""), ("null", None)], f"headers of {key}: {m.headers()}")
lo, hi = c.get_watermark_offsets(TopicPartition("rt", 0), timeout=10)
check(lo == 0 and hi == sum(1 for m in got.values() if m.partition() == 0), "watermarks")
c.close()

# LogAppendTime: the broker's clock, and the consumer is told so.
p = Producer({"bootstrap.servers": bs})
p.produce("stamped", key=b"k", value=b"v", timestamp=5)
p.flush(10)
c = Consumer({"bootstrap.servers": bs, "group.id": "unused", "enable.auto.commit": False})
c.assign([TopicPartition("stamped", 0, 0)])
m = c.poll(10)
check(m is not None and m.error() is None, "a stamped record")
kind, ts = m.timestamp()
check(kind == TIMESTAMP_LOG_APPEND_TIME and ts > 1_700_000_000_000, f"log-append time, got {m.timestamp()}")
c.close()
print("ok", len(expected))
