"""The first run without network, through the real ``harvest`` console script (issue 14, item 1).

A host whose name does not resolve, or a port with nothing listening, cannot heal in the next minute:
it is asked twice (not six times over 42 s) and the run ends with exit 4 and one short line naming the
host and the reason. Attempts are counted from the retry lines at -v, never timed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harvester.core.errors import ExitCode

SCRIPT = Path(sys.executable).parent / "harvest"


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def harvest_offline(home: Path, base_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARVEST_")}
    env |= {
        "HOME": str(home),
        "HARVEST_EMAIL": "tests@example.org",
        "HARVEST_RATE_DIR": "off",
        "HARVEST_EUTILS_URL": base_url,
        "HARVEST_IDCONV_URL": base_url,
        "HARVEST_CROSSREF_URL": base_url,
    }
    return subprocess.run(
        [str(SCRIPT), "--db", str(home / "h.sqlite"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("base_url", "host", "reason"),
    [
        ("http://nonexistent.invalid/entrez/eutils/", "nonexistent.invalid", "name does not resolve"),
        ("http://127.0.0.1:{port}/entrez/eutils/", "127.0.0.1:{port}", "connection refused"),
    ],
    ids=["name-does-not-resolve", "nothing-listening"],
)
def test_the_first_run_without_network_asks_twice_and_says_why_in_one_line(
    tmp_path: Path, base_url: str, host: str, reason: str
) -> None:
    port = closed_port()
    base_url, host = base_url.format(port=port), host.format(port=port)

    done = harvest_offline(tmp_path, base_url, "pmid", "35350566")
    assert done.returncode == ExitCode.UPSTREAM, done.stderr
    lines = done.stderr.splitlines()
    naming = [line for line in lines if f"cannot reach {host}: {reason}" in line]
    assert len(naming) == 1, done.stderr
    assert not [line for line in lines if "WARNING" in line or "retrying" in line], done.stderr
    for line in lines:
        assert "http://" not in line and "…" not in line and len(line) < 200, line
    assert "Traceback" not in done.stderr

    verbose = harvest_offline(tmp_path, base_url, "-v", "pmid", "35350566")
    assert verbose.returncode == ExitCode.UPSTREAM
    retries = [line for line in verbose.stderr.splitlines() if "failed, retrying" in line]
    assert retries == [retries[0]] and f"{host}: {reason}; attempt 1 of 2 failed" in retries[0]
    assert "(2 attempts)" in verbose.stderr
