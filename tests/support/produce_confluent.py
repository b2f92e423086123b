"""Produces an NDJSON file's lines to a Kafka topic with the confluent-kafka client (an
independent Kafka client, used by emoflow's end-to-end tests): line i goes to partition
i % PARTITIONS, so its offset is i // PARTITIONS on a fresh topic."""

import sys

from confluent_kafka import Producer


def main() -> int:
    brokers, topic, path, partitions = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    producer = Producer({"bootstrap.servers": brokers, "acks": "all", "enable.idempotence": True})
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(err)

    with open(path, "rb") as f:
        lines = [line.rstrip(b"\n") for line in f if line.strip()]
    for i, line in enumerate(lines):
        producer.produce(topic, value=line, partition=i % partitions, on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(30)
    if failures or left:
        print(f"not delivered: {len(failures)} failed, {left} pending: {failures[:3]}", file=sys.stderr)
        return 1
    print(len(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
