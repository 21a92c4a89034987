"""The embedded dashboard in headless Chromium.

Runs the Node suite in tests/browser (`node --test`, playwright-core driving
Debian's /usr/bin/chromium) against the binary under test, so its outcome is
part of this suite's summary. The Node suite starts its own `sluice` node on
127.0.0.1 ephemeral ports and ends it, and the browser, by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from harness import REPO_ROOT, sluice_binary

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
FIGURES = REPO_ROOT / "tests" / ".work" / "browser-figures.json"
# The whole Node suite (about 80 s: page loads, flows, the simulator, 15 s of
# measurement); below the suite-wide pytest timeout of scripts/test.sh.
SUITE_TIMEOUT = 280


def run_node_suite(test_file: str, timeout: int = SUITE_TIMEOUT) -> str:
    """Run one file of the Node suite; its output (asserted successful)."""
    node = shutil.which("node")
    assert node, "node is not installed (scripts/test.sh installs npm and nodejs)"
    assert (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(), (
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser "
        "(scripts/test.sh does)"
    )
    # SLUICE_PYTHON: the Kafka clients some browser tests drive (confluent-kafka).
    env = dict(os.environ, SLUICE_BIN=str(sluice_binary().resolve()), SLUICE_PYTHON=sys.executable)
    proc = subprocess.Popen(
        [node, "--test", "--test-concurrency=1", "--test-reporter=spec", test_file],
        cwd=BROWSER_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The suite's own process group: node, and anything it failed to end.
        os.killpg(proc.pid, 9)
        output, _ = proc.communicate()
        raise AssertionError(
            f"browser suite did not finish in {timeout}s\n"
            + output.decode("utf-8", "replace")[-8000:]
        )
    text = output.decode("utf-8", "replace")
    print(text[-6000:])
    assert proc.returncode == 0, f"browser suite failed (exit {proc.returncode})\n{text[-8000:]}"
    return text


def test_dashboard_pages_flows_and_main_thread_budget_in_headless_chromium():
    run_node_suite("dashboard.test.mjs")
    if FIGURES.exists():
        print(json.dumps(json.loads(FIGURES.read_text()), indent=2))


def test_dashboard_login_form_and_roles_with_http_auth_in_headless_chromium():
    """login.test.mjs: a node with --http-auth; the form, a wrong token, an
    operator's session (data, live updates, a form write with CSRF), logout,
    an admin's simulator switch; screenshots login-form.png,
    logged-in-operator.png and logged-in-admin.png."""
    run_node_suite("login.test.mjs", timeout=120)


def test_shop_pages_money_feed_events_form_refund_raft_and_sorting_in_headless_chromium():
    """shop.test.mjs: revenue per currency on the card and the chart, one
    feed line per event and Events/s counting events, the payment form's
    messages (a third decimal; an amount that is not the one due), the
    refund from the order page, the single-node Cluster page without Raft,
    the Orders table sorted by creation under live traffic with its pause.
    Screenshots go to a temporary directory, never into the repo."""
    run_node_suite("shop.test.mjs", timeout=180)


def test_console_topics_messages_tail_groups_brokers_in_headless_chromium():
    """console.test.mjs: create a topic, produce a record with headers from
    the UI and find it by a header filter and by a JSON-path filter, tail
    the topic while a Kafka client produces, reset a group's offsets to a
    timestamp (a librdkafka consumer then starts there), the Brokers page and
    /api/docs, the four pages in French (labels, a count of 1 200 with
    fr-FR's narrow no-break space, dates day/month/year) and back to English,
    delete the topic."""
    run_node_suite("console.test.mjs", timeout=150)


def test_shop_pages_sorting_pause_forms_notifications_french_and_dark_theme_in_headless_chromium():
    """shop_pages.test.mjs: the Orders table sorted by the header clicked and
    a pause that queues and counts new orders, the order form's message per
    field and the payment form's amount due, the notifications page (listed
    once each, live, filtered), French labels and Intl formats behind the
    navbar switch (remembered), the dark theme (remembered, charts in its
    colours), /api/cluster without Raft on a single node; screenshots of the
    pages in the dark theme and in French into a temporary directory."""
    run_node_suite("shop_pages.test.mjs", timeout=180)
