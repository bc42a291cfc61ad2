"""chaos_producer.py BOOTSTRAP TOPIC FIRST_ID: produces the chaos test's clicks (ids from
FIRST_ID on, key k<id%50>, JSON value with ID, U and V as the test's REST client writes them)
with acks=all and idempotence, about 2,000 a second, until killed; prints each acknowledged id
on its own line as its acknowledgement arrives. Keys are partitioned with murmur2, as Kafka's
Java client and Eddy partition them."""
import json
import sys
import time

from confluent_kafka import Producer

bs, topic, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True,
              "linger.ms": 5, "partitioner": "murmur2_random", "message.timeout.ms": 10000})


def delivered(err, m):
    if err is None:
        print(json.loads(m.value())["ID"], flush=True)


i = first
while True:
    value = json.dumps({"ID": i, "U": f"u{i % 20}", "V": i % 100})
    try:
        p.produce(topic, key=f"k{i % 50}", value=value, on_delivery=delivered)
        i += 1
    except BufferError:
        pass
    p.poll(0)
    if i % 20 == 0:
        time.sleep(0.01)
