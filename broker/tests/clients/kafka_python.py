"""kafka-python (a pure-Python client, not librdkafka) against Eddy: it guesses the broker's
release from the versions advertised, then admin, idempotent compressed produce, a group that
commits and resumes. Usage: kafka_python.py BOOTSTRAP"""
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

bs = sys.argv[1]

def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")

admin = KafkaAdminClient(bootstrap_servers=bs)
check(admin._client.check_version() >= (3, 0), "seen as Kafka 3.x")
admin.create_topics([NewTopic("kp", 2, 1)])
check("kp" in admin.list_topics(), "listed")

producer = KafkaProducer(bootstrap_servers=bs, acks="all", compression_type="gzip", enable_idempotence=True)
for i in range(100):
    producer.send("kp", key=b"k%d" % i, value=b"v%d" % i, headers=[("a", b"1"), ("a", b"2")],
                  partition=i % 2, timestamp_ms=1_000 + i)
producer.flush()
producer.close()

def consume(expect):
    c = KafkaConsumer("kp", bootstrap_servers=bs, group_id="kpg", auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=5000)
    got = []
    for m in c:
        got.append(m)
        if len(got) == expect:
            break
    return c, got

c, got = consume(100)
check(len(got) == 100, f"consumed {len(got)}")
m = [m for m in got if m.key == b"k42"][0]
check((m.value, m.timestamp, m.headers) == (b"v42", 1042, [("a", b"1"), ("a", b"2")]), f"record {m}")
c.commit()
check(c.committed(TopicPartition("kp", 0)) == 50, "committed")
c.close()

producer = KafkaProducer(bootstrap_servers=bs)
producer.send("kp", key=b"late", value=b"late", partition=0)
producer.flush()
c, got = consume(1)
check([m.key for m in got] == [b"late"], f"resumed after the commit: {got}")
c.close()
admin.delete_topics(["kp"])
print("ok")
