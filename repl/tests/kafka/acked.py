"""produce BOOTSTRAP TOPIC N: produces N records with acks=all and prints how many were
acknowledged. count BOOTSTRAP TOPIC: prints the keys a consumer reads from the start, sorted."""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

mode, bs, topic = sys.argv[1:4]
if mode == "produce":
    n = int(sys.argv[4])
    acked = []
    p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True, "linger.ms": 2})
    for i in range(n):
        p.produce(topic, key=str(i), value=b"x" * 100,
                  on_delivery=lambda err, m: acked.append(int(m.key())) if err is None else None)
        p.poll(0)
    p.flush(30)
    print(len(acked))
else:
    c = Consumer({"bootstrap.servers": bs, "group.id": "count", "enable.auto.commit": False})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    keys, done = [], set()
    deadline = time.time() + 60
    while len(done) < len(parts) and time.time() < deadline:
        m = c.poll(0.2)
        if m is None or m.error() is not None:
            continue
        keys.append(int(m.key()))
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
        done |= {p for p, e in ends.items() if e == 0}
    c.close()
    print(len(keys), len(set(keys)))
