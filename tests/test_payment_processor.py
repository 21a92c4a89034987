"""Exactly-once payment processing in the shop, against real processes: a
`sluice serve` node without its embedded processor, and the processor alone
(`sluice shop payment-processor`), killed with SIGKILL and restarted at
least five times while orders are created and paid through the REST API
(some payments sent twice). Afterwards `payments` is read with a
read_committed confluent-kafka consumer: every order that was charged has
exactly one PaymentAuthorized, every request in `payment-requests` has
exactly one outcome, and a read_uncommitted read shows the outcomes of the
aborted transactions (counts printed). Revenue per currency in /api/stats
equals the sum over the committed payment events; under- and overpayments
are still 422."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from harness import Broker, sluice_binary, wait_until
from shop_client import call, place_order, wait_order

ORDERS = 48
KILLS = 5
# Orders paid twice while the processor is down.
DUPLICATED = 3
TRANSACTIONAL_ID = "shop-payments-test"


class Processor:
    """`sluice shop payment-processor` as a child process, its output in a file."""

    def __init__(self, bootstrap: str, log_dir: Path):
        self.bootstrap = bootstrap
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_path: Path | None = None

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f"processor-{self.starts}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(sluice_binary()), "shop", "payment-processor",
                 "--bootstrap", self.bootstrap, "--transactional-id", TRANSACTIONAL_ID],
                stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_assigned(self, timeout: float = 30.0) -> None:
        wait_until(lambda: "payment processor assigned" in self.log(), timeout,
                   what="the payment processor to get its partitions")

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    node = Broker(tmp_path_factory.mktemp("eos-shop"), ["--shop-payment-processor", "false"])
    processor = None
    try:
        node.start()
        processor = Processor(node.bootstrap, tmp_path_factory.mktemp("eos-processor"))
        processor.start()
        processor.wait_assigned()
        yield node, processor
    finally:
        if processor:
            processor.kill9()
        node.stop()


def read_topic(bootstrap: str, topic: str, isolation: str) -> list[dict]:
    """Every record of `topic` (JSON values) at `isolation`, up to the end."""
    import json
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.monotonic_ns()}",
                         "enable.auto.commit": False, "isolation.level": isolation,
                         "enable.partition.eof": True})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = sorted(meta.partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records, done = [], {p for p in partitions if ends[p] == 0}
        deadline = time.monotonic() + 60
        while len(done) < len(partitions):
            assert time.monotonic() < deadline, f"reading {topic}: {len(done)}/{len(partitions)} done"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    pos = consumer.position([TopicPartition(topic, msg.partition())])[0].offset
                    if pos >= ends[msg.partition()] or isolation == "read_committed":
                        done.add(msg.partition())
                continue
            records.append(json.loads(msg.value()))
        return records
    finally:
        consumer.close()


def test_killed_processor_charges_every_order_exactly_once(shop):
    node, processor = shop
    order_ids = []
    for i in range(ORDERS):
        currency = "EUR" if i % 3 else "USD"
        order_ids.append((place_order(node, currency=currency)["order_id"], currency))
    for order_id, _ in order_ids:
        wait_order(node, order_id)

    answers: Counter = Counter()
    done = threading.Event()

    def pay(order_id: str) -> None:
        status, body = call(node, "POST", "/api/payments",
                            {"order_id": order_id, "amount": 52.48, "method": "card"})
        answers[(status, body.get("status") if status == 202 else body["error"]["code"])] += 1

    # Retried payments that reach the processor: while it is down the answer
    # says `pending`, so a retry passes validation (the order is still
    # unpaid) and becomes a second request for the same order.
    retried, order_ids = order_ids[:DUPLICATED], order_ids[DUPLICATED:]
    processor.kill9()
    kills = 1
    with ThreadPoolExecutor(max_workers=2 * DUPLICATED) as pool:
        list(pool.map(pay, [o for o, _ in retried for _ in range(2)]))
    assert answers[(202, "pending")] == 2 * DUPLICATED, answers
    processor.start()

    def traffic() -> None:
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = []
            for i, (order_id, _) in enumerate(order_ids):
                futures.append(pool.submit(pay, order_id))
                if i % 4 == 0:  # a retried payment: a second request for the same order
                    futures.append(pool.submit(pay, order_id))
            for f in futures:
                f.result()
        done.set()

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        while kills < KILLS + 1:
            # Kill once the restarted processor is at work on the traffic.
            answered = sum(answers.values())
            processor.wait_assigned()
            wait_until(lambda: sum(answers.values()) > answered or done.is_set(), 60,
                       what="payment answers")
            processor.kill9()
            kills += 1
            processor.start()
        processor.wait_assigned()
        assert done.wait(120), "the payment traffic did not finish"
    finally:
        done.wait(120)
    print(f"\nprocessor killed {kills} times; answers {dict(answers)}")
    assert all(s in (202, 409) for s, _ in answers), answers

    requests = [r for r in read_topic(node.bootstrap, "payment-requests", "read_committed")
                if r["type"] == "PaymentRequested"]
    requested_ids = {r["data"]["payment_id"] for r in requests}
    charged_orders = {r["order_id"] for r in requests}
    order_ids += retried
    assert charged_orders == {o for o, _ in order_ids}

    def committed_outcomes():
        return [r for r in read_topic(node.bootstrap, "payments", "read_committed")
                if r["data"]["payment_id"] in requested_ids]

    outcomes = wait_until(
        lambda: (lambda o: o if {r["data"]["payment_id"] for r in o} >= requested_ids else None)(
            committed_outcomes()),
        90, what="an outcome for every payment request")
    per_payment = Counter(r["data"]["payment_id"] for r in outcomes)
    assert set(per_payment) == requested_ids, "a request without an outcome"
    assert all(n == 1 for n in per_payment.values()), \
        [p for p, n in per_payment.items() if n > 1]
    authorized = Counter(r["order_id"] for r in outcomes if r["type"] == "PaymentAuthorized")
    assert set(authorized) == charged_orders, "an order was never charged"
    assert all(n == 1 for n in authorized.values()), \
        {o: n for o, n in authorized.items() if n > 1}
    failed = [r for r in outcomes if r["type"] == "PaymentFailed"]
    assert all(r["data"]["reason"] == "already paid" for r in failed), failed
    assert len(failed) >= DUPLICATED, "each retried request was answered 'already paid'"

    uncommitted = [r for r in read_topic(node.bootstrap, "payments", "read_uncommitted")
                   if r["data"]["payment_id"] in requested_ids]
    aborted = len(uncommitted) - len(outcomes)
    print(f"requests {len(requests)} (orders {len(charged_orders)}), committed outcomes "
          f"{len(outcomes)} (authorized {sum(authorized.values())}, already paid {len(failed)}), "
          f"outcome records incl. aborted {len(uncommitted)}, aborted {aborted}")
    assert aborted >= 0
    if aborted:
        again = Counter(r["data"]["payment_id"] for r in uncommitted)
        assert any(n > 1 for n in again.values()), "aborted outcomes are duplicates of committed ones"

    # Revenue per currency: the read model (read_committed) against the topic.
    revenue: defaultdict = defaultdict(int)
    for r in read_topic(node.bootstrap, "payments", "read_committed"):
        sign = {"PaymentAuthorized": 1, "PaymentRefunded": -1}.get(r["type"], 0)
        revenue[r["data"]["currency"]] += sign * r["data"]["amount_cents"]
    expected = {c: v for c, v in revenue.items() if v}

    def stats_match():
        status, stats = call(node, "GET", "/api/stats")
        return status == 200 and {c: v for c, v in stats["revenue_cents"].items() if v} == expected
    wait_until(stats_match, 30, what=f"/api/stats revenue to equal {expected}")
    for order_id, _ in order_ids:
        assert wait_order(node, order_id)["status"] == "paid"


def test_underpayment_and_overpayment_are_refused_without_a_request(shop):
    node, _ = shop
    order_id = place_order(node, currency="EUR")["order_id"]
    wait_order(node, order_id)
    for amount in [3, 52.47, 52.49, 100]:
        status, body = call(node, "POST", "/api/payments",
                            {"order_id": order_id, "amount": amount, "method": "card"})
        assert status == 422 and body["error"]["code"] == "amount_mismatch", (amount, body)
    status, body = call(node, "POST", "/api/payments",
                        {"order_id": order_id, "amount": 52.48, "method": "card"})
    assert status == 202 and body["topic"] == "payment-requests", body
    assert body["status"] in ("authorized", "pending"), body
    wait_order(node, order_id, lambda o: o["status"] == "paid", timeout=30)
