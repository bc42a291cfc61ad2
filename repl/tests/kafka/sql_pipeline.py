"""Writes orders as a Kafka application would, then reads what Eddy's query made of them.
Usage: sql_pipeline.py BOOTSTRAP EXPECTED_OUTPUT_RECORDS; prints key<TAB>value per output record."""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

bs, expected = sys.argv[1], int(sys.argv[2])
p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "linger.ms": 5})
for i in range(20):
    p.produce("orders", key=f"order-{i:02}", value=json.dumps({"item": f"item-{i % 4}", "amount": i % 6}))
if p.flush(20):
    sys.exit("FAILED: not everything was produced")

c = Consumer({"bootstrap.servers": bs, "group.id": "readers", "enable.auto.commit": False,
              "isolation.level": "read_committed"})
partitions = c.list_topics("BIG_ORDERS", timeout=10).topics["BIG_ORDERS"].partitions
c.assign([TopicPartition("BIG_ORDERS", p, 0) for p in partitions])
out = []
deadline = time.time() + 60
while len(out) < expected and time.time() < deadline:
    m = c.poll(0.2)
    if m is not None and m.error() is None:
        out.append(f"{m.key().decode()}\t{m.value().decode()}")
c.close()
for line in sorted(out):
    print(line)
