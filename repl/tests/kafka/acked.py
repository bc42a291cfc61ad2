"""produce BOOTSTRAP TOPIC N: produces N records with acks=all, printing each acknowledged key
on its own line as the acknowledgement arrives (the broker may be killed meanwhile: records not
acknowledged within a few seconds are given up). count BOOTSTRAP TOPIC: prints how many records
a consumer reads from the start, how many distinct keys, and the keys."""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

mode, bs, topic = sys.argv[1:4]
if mode == "produce":
    n = int(sys.argv[4])
    p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 2, "message.timeout.ms": 4000})

    def delivered(err, m):
        if err is None:
            print(int(m.key()), flush=True)

    for i in range(n):
        while True:
            try:
                p.produce(topic, key=str(i), value=b"x" * 100, on_delivery=delivered)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
        if i % 500 == 0:
            time.sleep(0.01)  # spread over about a second, so the kill lands mid-stream
    p.flush(10)
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
    print(" ".join(map(str, sorted(keys))))
