"""How long a broker holds an empty fetch: Kafka's Fetch request carries MaxWaitMs, and a
broker with nothing new answers when it has waited that long (or has min-bytes to send).

A consumer (confluent-kafka) reads an idle partition with fetch.wait.max.ms=500 for 5 s and
counts the Fetch requests it sent (its own statistics): about 2 a second from a broker that
waits, thousands from one that answers at once.

    python benches/brokers/fetch_wait.py HOST:PORT     (the tests' environment: scripts/python-env.sh)
"""

import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

brokers = sys.argv[1]
topic = f"fetch-wait-{int(time.time() * 1000)}"
admin = AdminClient({"bootstrap.servers": brokers})
admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
producer = Producer({"bootstrap.servers": brokers})
producer.produce(topic, b"one record, then nothing")
producer.flush(10)
stats = []
consumer = Consumer({"bootstrap.servers": brokers, "group.id": topic, "fetch.wait.max.ms": 500,
                     "statistics.interval.ms": 1000,
                     "stats_cb": lambda text: stats.append(json.loads(text))})
consumer.assign([TopicPartition(topic, 0, 0)])
started = time.time()
while time.time() - started < 6.5:
    consumer.poll(0.1)
consumer.close()


def fetches(s):
    return sum(b["req"].get("Fetch", 0) for b in s["brokers"].values())


first, last = stats[1], stats[-1]
n, seconds = fetches(last) - fetches(first), (last["ts"] - first["ts"]) / 1e6
print(f"{brokers}: {n} Fetch requests in {seconds:.1f} s on an idle partition with "
      f"fetch.wait.max.ms=500: {n / seconds:.0f} a second")
