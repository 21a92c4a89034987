"""kafkajs, the Node.js Kafka client, against the shared broker.

tests/kafkajs/kafkajs.test.mjs (node --test; kafkajs pinned in its
package-lock.json, installed by scripts/test.sh or here with `npm ci`):
admin create, list, describe and delete topics; 1,000 keyed records with
headers from an idempotent producer read back exactly once in per-key order
by a group consumer; a group of two members that rebalances when the second
joins (every partition held once, both consume, DescribeGroups shows two
members, Stable) and again when it leaves, with every record committed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

KAFKAJS_DIR = Path(__file__).resolve().parent / "kafkajs"


def ensure_kafkajs() -> None:
    if (KAFKAJS_DIR / "node_modules" / "kafkajs" / "package.json").exists():
        return
    subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=KAFKAJS_DIR, check=True,
    )


def test_kafkajs_produce_consume_groups_admin(broker):
    ensure_kafkajs()
    env = dict(os.environ, SLUICE_BOOTSTRAP=broker.bootstrap, KAFKAJS_NO_PARTITIONER_WARNING="1")
    proc = subprocess.run(
        ["node", "--test", "--test-concurrency=1", "kafkajs.test.mjs"],
        cwd=KAFKAJS_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=240,
    )
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "# pass 3" in proc.stdout and "# fail 0" in proc.stdout
