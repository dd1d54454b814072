"""`make demo`'s ports and commands: the documented ports are used unless another process really
listens on them (a TIME_WAIT socket of the last run does not count), a taken port is said loudly, and
the commands the demo prints are the quickstart's."""

from __future__ import annotations

import errno
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from devkit.records import AccessRecords
from scripts.demo import documented_port, port_is_free, record_line, try_it

ROOT = Path(__file__).resolve().parents[2]


def _time_wait_port() -> int:
    """A port whose only socket is in TIME_WAIT: a connection to a listener made as asyncio makes the
    proxy's and dev-iap's (SO_REUSEADDR, which the kernel then keeps on the TIME_WAIT socket), closed by
    the server side first, as the proxy does at shutdown."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()  # FIN from the server side first: the server's end goes to TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    return port


def test_a_time_wait_socket_does_not_make_the_documented_port_look_taken() -> None:
    port = _time_wait_port()
    with socket.socket() as plain, pytest.raises(OSError) as err:
        plain.bind(("127.0.0.1", port))  # the old probe, without SO_REUSEADDR: "busy"
    assert err.value.errno == errno.EADDRINUSE
    said: list[str] = []
    assert port_is_free(port)
    assert documented_port(port, "the proxy", said.append) == port and said == []
    with socket.socket() as s:  # and a real listener binds it, as asyncio's server does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_a_port_another_process_listens_on_is_said_loudly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said: list[str] = []
        assert not port_is_free(port)
        other = documented_port(port, "the proxy", said.append)
    assert other != port
    (message,) = said
    assert f"Port {port} is taken" in message and f"the proxy is on 127.0.0.1:{other} instead" in message
    assert f"where the docs say {port}, use {other}" in message and f"ss -ltnp 'sport = :{port}'" in message


def test_the_demo_prints_the_quickstarts_commands() -> None:
    text = (ROOT / "docs" / "quickstart.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    printed = try_it("http://127.0.0.1:8265", Path(".demo/run/dev-key.pem"))
    assert printed in blocks, "docs/quickstart.md must show exactly what make demo prints"
    assert (ROOT / "examples" / "train.py").is_file()  # what --working-dir examples -- python train.py runs


async def test_the_demo_prints_the_records_the_proxy_writes(make_client: Any, mint: Any) -> None:
    """The demo's access-log lines are built from a record the real app wrote, whatever its shape."""
    records = AccessRecords()
    client = await make_client(access_log=records)
    r = await client.post(
        "/api/jobs/", headers={"x-goog-iap-jwt-assertion": mint("bob@example.com")}, json={}
    )
    assert r.status == 403
    line = record_line(records.last()).split()
    assert line == ["POST", "/api/jobs/", "bob@example.com", "submit", "deny", "403"]
