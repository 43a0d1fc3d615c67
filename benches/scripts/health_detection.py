#!/usr/bin/env python3
"""Measures how fast coexist takes a dead server out of rotation.

Starts three echo servers and coexist on loopback, stops one server and
times, from the moment its listener closed, until /status shows it down:

  active  - no client traffic: only the health checks notice;
  passive - a client opening connections back to back: failed connects
            count toward `fall` before the next check runs.

Usage: benches/scripts/health_detection.py [path/to/coexist] [rounds]
Everything stays on 127.0.0.1; every loop is bounded.
"""
import json, os, socket, subprocess, sys, tempfile, threading, time, urllib.request

COEXIST = sys.argv[1] if len(sys.argv) > 1 else "target/release/coexist"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
INTERVAL_MS, TIMEOUT_MS, RISE, FALL = 1000, 500, 2, 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"hi\n")
            conn.close()

    def stop(self):
        # shutdown() wakes the thread blocked in accept(); close() alone
        # would leave the socket listening until the next connection.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def status(admin):
    with urllib.request.urlopen(f"http://{admin}/status", timeout=2) as r:
        return json.load(r)


def state_of(admin, name):
    for s in status(admin)["backends"][0]["servers"]:
        if s["name"] == name:
            return s["state"]


def wait_state(admin, name, state, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if state_of(admin, name) == state:
                return time.monotonic()
        except OSError:
            pass  # the daemon is still starting
        time.sleep(0.001)
    raise SystemExit(f"{name} never became {state}")


def measure(passive):
    servers = [Server() for _ in range(3)]
    listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    rows = ",\n".join(f'  {{ name = "s{i}", address = "127.0.0.1:{s.port}" }}' for i, s in enumerate(servers))
    config = f"""
[admin]
listen = "{admin}"
[[frontend]]
name = "web"
listen = ["{listen}"]
backend = "pool"
[[backend]]
name = "pool"
health_check = {{ kind = "tcp", interval = "{INTERVAL_MS}ms", timeout = "{TIMEOUT_MS}ms", rise = {RISE}, fall = {FALL} }}
servers = [
{rows}
]
"""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.toml")
        open(path, "w").write(config)
        proc = subprocess.Popen([COEXIST, "run", "--config", path], stderr=subprocess.DEVNULL)
        try:
            for i in range(3):
                wait_state(admin, f"s{i}", "up")
            stop = threading.Event()
            host, port = listen.split(":")

            def client():
                for _ in range(200000):  # bounded
                    if stop.is_set():
                        return
                    try:
                        with socket.create_connection((host, int(port)), timeout=2) as c:
                            c.recv(16)
                    except OSError:
                        pass

            if passive:
                t = threading.Thread(target=client, daemon=True)
                t.start()
                time.sleep(0.2)
            started = time.monotonic()
            servers[1].stop()
            down = wait_state(admin, "s1", "down")
            stop.set()
            return (down - started) * 1000
        finally:
            proc.terminate()
            proc.wait(timeout=40)
            for s in servers:
                s.stop()


for kind, passive in (("active (checks only)", False), ("passive (client traffic)", True)):
    figures = sorted(measure(passive) for _ in range(ROUNDS))
    print(f"{kind:26} interval {INTERVAL_MS} ms, fall {FALL}: "
          f"min {figures[0]:.0f} ms, median {figures[len(figures)//2]:.0f} ms, max {figures[-1]:.0f} ms")
