"""Serve a sandboxed service's port on the host: `relay.py FD PORT -- COMMAND...`.

A local workspace's processes run in a network namespace of their own
(`pools.isolation.network_prefix`): they cannot connect to the portal, its database or
another workspace, and their services listen on 127.0.0.1 inside it. The supervisor binds
the service's port on the host's 127.0.0.1 and hands this script that socket, bound but
not listening, as file descriptor FD (systemd's socket activation works the same way).

This script runs COMMAND, waits until COMMAND accepts connections on 127.0.0.1:PORT in the
namespace, and only then listens on the host socket: until the service is up, a
connection to its port is refused, as it was before the sandbox had a network of its own.
Each accepted connection is copied both ways to a connection of its own to the service.
When COMMAND ends, so does the relay, with its exit status, and the port closes.

It uses the standard library only: it runs inside the sandbox, as the workspace's uid.
"""

import selectors
import socket
import subprocess
import sys
import threading
import time

CHUNK = 65536


def main(argv: list[str]) -> int:
    fd, port, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit(__doc__.splitlines()[0])
    outside = socket.socket(fileno=int(fd))
    child = subprocess.Popen(command)
    while child.poll() is None and not _answers(int(port)):
        time.sleep(0.1)
    if child.poll() is not None:
        return child.returncode
    outside.listen(128)
    threading.Thread(target=_serve, args=(outside, int(port)), daemon=True).start()
    return child.wait()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _serve(outside: socket.socket, port: int) -> None:
    while True:
        client, _ = outside.accept()
        threading.Thread(target=_pipe, args=(client, port), daemon=True).start()


def _pipe(client: socket.socket, port: int) -> None:
    """Copy bytes both ways until both sides have finished sending."""
    try:
        service = socket.create_connection(("127.0.0.1", port))
    except OSError:
        client.close()
        return
    peers = {client: service, service: client}
    open_reads = set(peers)
    with selectors.DefaultSelector() as selector:
        for sock in peers:
            selector.register(sock, selectors.EVENT_READ)
        while open_reads:
            for key, _ in selector.select():
                source = key.fileobj
                try:
                    data = source.recv(CHUNK)
                    if data:
                        peers[source].sendall(data)
                        continue
                    peers[source].shutdown(socket.SHUT_WR)  # pass the end of the stream on
                except OSError:
                    open_reads.clear()  # a reset: close both
                    break
                selector.unregister(source)
                open_reads.discard(source)
    client.close()
    service.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
