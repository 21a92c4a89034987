"""SASL, TLS and ACLs together, as an operator sets them up.

One node with a SASL_SSL listener (and a PLAINTEXT one, where every client
is User:ANONYMOUS), `--authorizer acl` and `--super-users User:admin`. The
super-user is added with `sluice users add` before the first start; the
other user, alice, through the Admin API by the super-user. From then on
alice's rights are what the super-user grants her with ACLs.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer as CProducer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    NewTopic,
    ResourcePattern,
    ResourceType,
)
from kafka.admin._users import UserScramCredentialUpsertion
from kafka.errors import TopicAuthorizationFailedError

from harness import Broker, unique_topic
from test_acls import assert_group_refused
from test_sasl_tls import (
    certs,  # noqa: F401  (the module's certificate fixture)
    kafka_python_sasl,
    librdkafka_sasl,
    listener_ports,
    users_cmd,
)

ADMIN, ADMIN_PW = "admin", "admin-e2e-secret"
ALICE, ALICE_PW = "alice", "alice-e2e-secret"
TOPIC_AUTHORIZATION_FAILED = 29
CLUSTER_AUTHORIZATION_FAILED = 31


@pytest.fixture(scope="module")
def node(tmp_path_factory, certs):  # noqa: F811
    data_dir = tmp_path_factory.mktemp("secure-acl-broker")
    added = users_cmd("add", ADMIN, "--mechanism", "SCRAM-SHA-512", "--password", ADMIN_PW,
                      "--data-dir", str(data_dir))
    assert added.returncode == 0, added.stderr.decode()
    broker = Broker(data_dir, [
        "--listeners", "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--authorizer", "acl", "--super-users", f"User:{ADMIN}",
        # The shop is a Kafka client too; it would need ACLs of its own.
        "--shop", "false",
    ])
    broker.start()
    try:
        broker.ports = listener_ports(broker)
        broker.sasl = f"127.0.0.1:{broker.ports['SASL_SSL']}"
        broker.certs = certs
        admin = admin_client(broker)
        try:
            result = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(ALICE, "SCRAM-SHA-512", ALICE_PW,
                                              iterations=4096)])
            assert result == {ALICE: None}
        finally:
            admin.close()
        yield broker
    finally:
        broker.stop()


def conf(node: Broker, user: str, password: str) -> dict:
    return kafka_python_sasl("SCRAM-SHA-512", user, password, "SASL_SSL", node.certs)


def admin_client(node: Broker, user: str = ADMIN, password: str = ADMIN_PW) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=node.sasl, request_timeout_ms=30000,
                            **conf(node, user, password))


def grant(node: Broker, *acls: ACL) -> None:
    admin = admin_client(node)
    try:
        result = admin.create_acls(list(acls))
    finally:
        admin.close()
    assert not result["failed"], result


def alice_acl(resource_type, name, operation,
              pattern=ACLResourcePatternType.LITERAL) -> ACL:
    return ACL(principal=f"User:{ALICE}", host="*", operation=operation,
               permission_type=ACLPermissionType.ALLOW,
               resource_pattern=ResourcePattern(resource_type, name, pattern))


def create_topic(node: Broker, name: str) -> None:
    admin = admin_client(node)
    try:
        admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        admin.close()


def alice_produces(node: Broker, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=node.sasl, acks="all", retries=0,
                             request_timeout_ms=30000, **conf(node, ALICE, ALICE_PW))
    try:
        producer.send(topic, b"from-alice", partition=0).get(timeout=30)
    finally:
        producer.close(timeout=10)


def confluent_alice_produce_error(node: Broker, topic: str) -> int | None:
    settings = {"bootstrap.servers": node.sasl, "enable.idempotence": False, "retries": 0,
                "message.timeout.ms": 20000,
                **librdkafka_sasl("SCRAM-SHA-512", ALICE, ALICE_PW, "SASL_SSL", node.certs)}
    producer = CProducer(settings)
    reports = []
    producer.produce(topic, b"v", partition=0, on_delivery=lambda err, msg: reports.append(err))
    producer.flush(30)
    assert len(reports) == 1, "no delivery report within 30 s"
    return None if reports[0] is None else reports[0].code()


def test_a_user_without_write_is_refused_and_a_prefixed_allow_lets_her_produce(node):
    topic = unique_topic("e2e-orders")
    create_topic(node, topic)
    # She may see the topic, not write to it.
    grant(node, alice_acl(ResourceType.TOPIC, topic, ACLOperation.DESCRIBE))
    with pytest.raises(TopicAuthorizationFailedError):
        alice_produces(node, topic)
    assert confluent_alice_produce_error(node, topic) == TOPIC_AUTHORIZATION_FAILED

    grant(node, alice_acl(ResourceType.TOPIC, "e2e-orders", ACLOperation.WRITE,
                          ACLResourcePatternType.PREFIXED))
    alice_produces(node, topic)
    assert confluent_alice_produce_error(node, topic) is None


def test_a_group_read_acl_governs_joining_a_group(node):
    topic = unique_topic("e2e-events")
    group = f"e2e-group-{uuid.uuid4().hex[:8]}"
    create_topic(node, topic)
    producer = KafkaProducer(bootstrap_servers=node.sasl, acks="all",
                             **conf(node, ADMIN, ADMIN_PW))
    try:
        producer.send(topic, b"a", partition=0).get(timeout=30)
    finally:
        producer.close(timeout=10)
    grant(node, alice_acl(ResourceType.TOPIC, topic, ACLOperation.READ))

    def consumer() -> KafkaConsumer:
        return KafkaConsumer(topic, bootstrap_servers=node.sasl, group_id=group,
                             auto_offset_reset="earliest", consumer_timeout_ms=20000,
                             request_timeout_ms=30000, **conf(node, ALICE, ALICE_PW))

    assert_group_refused(consumer())

    grant(node, alice_acl(ResourceType.GROUP, group, ACLOperation.READ))
    c = consumer()
    try:
        values = [m.value for m in c]
    finally:
        c.close()
    assert values == [b"a"]


def test_a_user_cannot_manage_credentials_or_acls_without_cluster_rights(node):
    admin = admin_client(node, ALICE, ALICE_PW)
    try:
        result = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion("mallory", "SCRAM-SHA-512", "m-secret-1",
                                          iterations=4096)])
        assert result["mallory"] is not None, result
        refused = admin.create_acls([alice_acl(ResourceType.CLUSTER, "kafka-cluster",
                                               ACLOperation.ALL)])
        assert refused["failed"] and not refused["succeeded"], refused
    finally:
        admin.close()
    admin = admin_client(node)
    try:
        described = admin.describe_user_scram_credentials(["mallory"])
        assert described["mallory"]["error"], described
    finally:
        admin.close()


def test_an_anonymous_client_on_the_plaintext_listener_sees_no_topics(node):
    topic = unique_topic("e2e-hidden")
    create_topic(node, topic)
    plain = f"127.0.0.1:{node.ports['PLAINTEXT']}"
    consumer = KafkaConsumer(bootstrap_servers=plain, request_timeout_ms=30000)
    try:
        assert topic not in consumer.topics()
    finally:
        consumer.close()
    producer = KafkaProducer(bootstrap_servers=plain, acks="all", retries=0,
                             max_block_ms=5000)
    try:
        with pytest.raises(Exception):
            producer.send(topic, b"anonymous", partition=0).get(timeout=30)
    finally:
        producer.close(timeout=10)
    # Nothing reached the log: the super-user reads the topic empty.
    reader = KafkaConsumer(topic, bootstrap_servers=node.sasl, auto_offset_reset="earliest",
                           consumer_timeout_ms=3000, **conf(node, ADMIN, ADMIN_PW))
    try:
        assert [m.value for m in reader] == []
    finally:
        reader.close()
