"""The kernel's share of a fan-out: the cost of one small write to a loopback TCP socket.

Opens PAIRS connected loopback socket pairs (TCP_NODELAY, as the broadcaster sets), writes
one BYTES-byte message to every server side in a loop and reads it on every client side,
ROUNDS times, and prints JSON with the median microseconds per write and per read. No
WebSocket, no event loop: what any broadcaster on this machine pays per client at least.

    python3 benches/loopback_floor.py [PAIRS] [BYTES] [ROUNDS]
"""
import json
import resource
import socket
import statistics
import sys
import time

pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
size = int(sys.argv[2]) if len(sys.argv) > 2 else 600
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
pairs = min(pairs, (hard - 64) // 2)

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4096)
clients, servers = [], []
for _ in range(pairs):
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    clients.append(client)
    servers.append(server)

message = b"x" * size
writes, reads = [], []
for _ in range(rounds):
    started = time.perf_counter()
    for s in servers:
        s.send(message)
    sent = time.perf_counter()
    for c in clients:
        c.recv(size)
    done = time.perf_counter()
    writes.append(1e6 * (sent - started) / pairs)
    reads.append(1e6 * (done - sent) / pairs)
print(json.dumps({"pairs": pairs, "bytes": size, "rounds": rounds,
                  "write_us": round(statistics.median(writes), 2),
                  "read_us": round(statistics.median(reads), 2)}))
