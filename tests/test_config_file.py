"""A node configured by a TOML file (`--config`), `SLUICE_*` variables and
flags: flag > env > file > default, `sluice config show` names each value's
source, and a key that names no flag stops the node with a message naming it.
"""

from __future__ import annotations

import re
import subprocess

from cluster import free_ports
from command_node import Node, clean_env, port_open
from harness import sluice_binary, wait_until

READY_TIMEOUT = 60.0


def test_node_serves_on_the_ports_its_file_and_environment_give(tmp_path):
    kafka_port, file_http_port, env_http_port = free_ports(3)
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "sluice.toml"
    config.write_text(
        f'data-dir = "{data}"\n'
        f'kafka-addr = "127.0.0.1:{kafka_port}"\n'
        f'http-addr = "127.0.0.1:{file_http_port}"\n'   # the environment overrides it
        "shop = false\n"
        "node_id = 3\n"                                   # so do the variable and the flag
        "num-partitions = 4\n"
    )
    env = {"SLUICE_HTTP_ADDR": f"127.0.0.1:{env_http_port}", "SLUICE_NODE_ID": "4"}
    args = ["--config", str(config), "--node-id", "5"]
    binary = str(sluice_binary())

    shown = subprocess.run([binary, "config", "show", *args], env={**clean_env(), **env},
                           capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    expected = {
        "kafka-addr": (f'"127.0.0.1:{kafka_port}"', f"file {config}"),
        "http-addr": (f'"127.0.0.1:{env_http_port}"', "env SLUICE_HTTP_ADDR"),
        "node-id": ("5", "flag"),
        "num-partitions": ("4", f"file {config}"),
        "shop": ("false", f"file {config}"),
        "max-frame-bytes": ("104857600", "default"),
    }
    for key, (value, source) in expected.items():
        assert re.search(rf"^{key} = {re.escape(value)}  # {re.escape(source)}$",
                         shown.stdout, re.M), (key, shown.stdout)

    node = Node("from-file", [binary, "serve", *args], env, tmp_path,
                f"127.0.0.1:{env_http_port}")
    try:
        node.start()
        wait_until(node.ready, READY_TIMEOUT, interval=0.1, what="the node on the env's port")
        wait_until(lambda: "listening" in node.output(), READY_TIMEOUT, what="the listening line")
        line = next(ln for ln in node.output().splitlines() if "listening" in ln)
        assert f"kafka_addr=127.0.0.1:{kafka_port}" in line, line
        assert f"http_addr=127.0.0.1:{env_http_port}" in line, line
        assert "node_id=5" in line, line
        assert port_open(kafka_port)
        assert not port_open(file_http_port)
        assert (data / "logs").exists() or any(data.iterdir()), "the file's data-dir is unused"
        print(f"node from {config.name} + env: Kafka on {kafka_port} (file), "
              f"HTTP on {env_http_port} (env over file), node id 5 (flag over env and file)")
    finally:
        node.kill()


def test_unknown_key_stops_the_node_naming_the_key(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text('data-dir = "x"\nhttp-adress = "127.0.0.1:0"\n')
    for command in (["serve"], ["config", "show"]):
        run = subprocess.run([str(sluice_binary()), *command, "--config", str(config)],
                             env=clean_env(), capture_output=True, text=True, timeout=30,
                             cwd=tmp_path)
        assert run.returncode != 0, run.stdout
        assert "unknown key `http-adress`" in run.stderr, run.stderr
        assert str(config) in run.stderr, run.stderr
    assert not (tmp_path / "x").exists(), "the node started despite the unknown key"
