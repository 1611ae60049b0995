"""Whether a broker serves Kafka transactions, and what one costs: a transactional producer
(confluent-kafka) commits single-record transactions in a row and reports the time per
commit; then a second producer with the same transactional.id starts, and the first must be
fenced. A broker without EndTxn (KIP-98) says so at the first commit.

    python benches/brokers/transactions.py HOST:PORT     (the tests' environment: scripts/python-env.sh)
"""

import json
import sys
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

brokers = sys.argv[1]
commits = int(sys.argv[2]) if len(sys.argv) > 2 else 500
topic = f"transactions-{int(time.time() * 1000)}"
admin = AdminClient({"bootstrap.servers": brokers})
admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()


def producer():
    return Producer({"bootstrap.servers": brokers, "transactional.id": topic,
                     "transaction.timeout.ms": 60000})


result = {"brokers": brokers, "commits": commits}
first = producer()
try:
    first.init_transactions(10)
    started = time.time()
    for i in range(commits):
        first.begin_transaction()
        first.produce(topic, b"x")
        first.commit_transaction(10)
    result["ms_per_commit"] = round((time.time() - started) / commits * 1000, 3)
    second = producer()
    second.init_transactions(10)
    try:
        first.begin_transaction()
        first.produce(topic, b"zombie")
        first.commit_transaction(10)
        result["zombie_fenced"] = False
    except KafkaException as e:
        result["zombie_fenced"] = e.args[0].code() == -144  # _FENCED
        result["zombie_error"] = e.args[0].str()
except KafkaException as e:
    result["unsupported"] = e.args[0].str()
print(json.dumps(result))
