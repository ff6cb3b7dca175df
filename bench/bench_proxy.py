"""What the fault proxy costs: latency and throughput through it vs a direct connection to the
same RabbitMQ, measured in the same run (alternating direct/proxy rounds, best of N each).

    python bench/bench_proxy.py [--broker amqp://guest:guest@127.0.0.1:5672//] [--rounds 3]

Three measures, each with the publisher and a consumer on separate connections (as a worker
and its producer are), ~1 KB messages (the size of a small Celery task message):
- paced: 1000 messages/s for a few seconds; achieved rate and publish->consume latency p50/p99;
- flood: as many messages as the path carries; messages/s until the consumer has them all;
- confirm: sequential publishes with publisher confirms; round-trip p50.
Prints a table and one JSON line with the proxy/direct ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import amqp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from celery_doctor.repro.proxy import ProxyThread

BODY_PAD = "x" * 1000


def _connect(url: str, port: int) -> amqp.Connection:
    parts = urlsplit(url)
    conn = amqp.Connection(host=f"{parts.hostname}:{port}", userid=unquote(parts.username or "guest"),
                           password=unquote(parts.password or "guest"), connect_timeout=5)
    conn.connect()
    return conn


class Consumer:
    def __init__(self, url: str, port: int, queue: str) -> None:
        self.conn = _connect(url, port)
        self.channel = self.conn.channel()
        self.channel.basic_qos(0, 2000, False)
        self.latencies: list[float] = []
        self.count = 0
        self.last = 0.0
        self.stop = False
        self.channel.basic_consume(queue, callback=self._on_message, no_ack=True)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _on_message(self, message: amqp.Message) -> None:
        now = time.perf_counter()
        sent = float(message.body[:20])
        self.latencies.append(now - sent)
        self.count += 1
        self.last = now

    def _loop(self) -> None:
        while not self.stop:
            try:
                self.conn.drain_events(timeout=0.2)
            except TimeoutError:
                continue
            except OSError:
                return

    def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while self.count < n and time.perf_counter() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        self.conn.close()


def _message() -> amqp.Message:
    return amqp.Message(f"{time.perf_counter():<20.9f}{BODY_PAD}")


def one_round(url: str, port: int, rate: float, seconds: float, flood: int, confirms: int) -> dict[str, float]:
    queue = f"celery-doctor.bench.{uuid.uuid4().hex[:8]}"
    admin = _connect(url, port)
    admin_ch = admin.channel()
    admin_ch.queue_declare(queue, auto_delete=False)
    pub = _connect(url, port)
    ch = pub.channel()
    consumer = Consumer(url, port, queue)
    try:
        # paced
        total = int(rate * seconds)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            while (left := due - time.perf_counter()) > 0:
                time.sleep(min(left, 0.001))
            ch.basic_publish(_message(), exchange="", routing_key=queue)
        consumer.wait_for(total, 30)
        paced_rate = consumer.count / (consumer.last - start)
        lat = sorted(consumer.latencies)
        p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
        # flood
        consumer.count, consumer.latencies = 0, []
        start = time.perf_counter()
        for _ in range(flood):
            ch.basic_publish(_message(), exchange="", routing_key=queue)
        consumer.wait_for(flood, 60)
        flood_rate = consumer.count / (consumer.last - start)
        # confirms
        cch = pub.channel()
        cch.confirm_select()
        rtts = []
        for _ in range(confirms):
            t0 = time.perf_counter()
            cch.basic_publish(_message(), exchange="", routing_key=queue)
            cch.wait([amqp.spec.Basic.Ack], timeout=5)
            rtts.append(time.perf_counter() - t0)
        consumer.wait_for(flood + confirms, 10)
        return {"paced_rate": paced_rate, "latency_p50_ms": p50 * 1000, "latency_p99_ms": p99 * 1000,
                "flood_rate": flood_rate, "confirm_p50_ms": statistics.median(rtts) * 1000}
    finally:
        consumer.close()
        admin_ch.queue_delete(queue)
        admin.close()
        pub.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--flood", type=int, default=20000)
    parser.add_argument("--confirms", type=int, default=500)
    args = parser.parse_args()
    broker_port = urlsplit(args.broker).port or 5672
    proxy = ProxyThread(("127.0.0.1", 0), (urlsplit(args.broker).hostname or "127.0.0.1", broker_port))
    proxy_port = proxy.start()[1]
    results: dict[str, list[dict[str, float]]] = {"direct": [], "proxy": []}
    try:
        for _ in range(args.rounds):
            for name, port in (("direct", broker_port), ("proxy", proxy_port)):
                results[name].append(one_round(args.broker, port, args.rate, args.seconds, args.flood, args.confirms))
    finally:
        proxy.stop()
    best = {}
    for name, rounds in results.items():
        best[name] = {
            "paced_rate": max(r["paced_rate"] for r in rounds),
            "latency_p50_ms": min(r["latency_p50_ms"] for r in rounds),
            "latency_p99_ms": min(r["latency_p99_ms"] for r in rounds),
            "flood_rate": max(r["flood_rate"] for r in rounds),
            "confirm_p50_ms": min(r["confirm_p50_ms"] for r in rounds),
        }
    ratio = {k: best["proxy"][k] / best["direct"][k] for k in best["direct"]}
    added = {k: best["proxy"][k] - best["direct"][k] for k in ("latency_p50_ms", "latency_p99_ms", "confirm_p50_ms")}
    print(f"{'measure':<18}{'direct':>12}{'proxy':>12}{'proxy/direct':>14}")
    for key in best["direct"]:
        print(f"{key:<18}{best['direct'][key]:>12.2f}{best['proxy'][key]:>12.2f}{ratio[key]:>14.3f}")
    print(json.dumps({"best_of": args.rounds, "direct": best["direct"], "proxy": best["proxy"],
                      "ratio_proxy_over_direct": ratio, "added_ms": added}))


if __name__ == "__main__":
    main()
