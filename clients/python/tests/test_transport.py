"""The connection to tessera, against a stand-in server that closes every
connection right after answering one request (as tessera does with an idle
kept-alive connection after header_read_timeout, or a proxy at any time):
the next request must go out on a fresh connection, not fail with 503."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from conftest import KINDS, running_app
from tessera_client import ClientConfig

NO_SESSION = json.dumps(
    {
        "outcome": "no_session",
        "reason": "missing",
        "status": None,
        "token": None,
        "session": None,
        "set_cookie": [],
    }
).encode()


class OneShotServer:
    """Answers one request per connection (keep-alive advertised), then
    closes the connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"connection: keep-alive\r\ncontent-length: "
                    + str(len(NO_SESSION)).encode()
                    + b"\r\n\r\n"
                    + NO_SESSION
                )

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_closed_by_the_server_is_not_a_503(kind: str) -> None:
    server = OneShotServer()
    try:
        config = ClientConfig(url=f"http://127.0.0.1:{server.port}", api_key="tsk_unused")
        with running_app(kind, config) as app:
            for _ in range(3):
                response = app.http.get("/whoami")
                assert response.status_code == 401, response.text
                assert response.json()["reason"] == "missing"
                # The server has closed the connection by now.
                time.sleep(0.1)
            assert server.connections == 3
    finally:
        server.close()
