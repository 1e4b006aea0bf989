#!/usr/bin/env python3
"""Chat fan-out benchmark: aether beside a `ws` room broadcast and a Socket.IO 4.8 room broadcast,
in one run, on loopback. Each server runs pinned to core 0, the load generator (bench/chatload)
to core 1. Scenarios, per server:

  * S subscribers x 100 msgs/s in one room (default S = 1000 and 5000): deliveries/s, delivery
    latency p50/p99/max over sampled messages, messages lost, server CPU seconds per million
    deliveries;
  * N idle connections joined to the room (default 5000; the issue's goal is stated at 19000):
    server RSS per idle connection.

    python3 bench/chat_fanout.py
    python3 bench/chat_fanout.py --subscribers 1000,5000 --idle 19000 --seconds 20

Needs node (the peers install from bench/peers/package.json) and taskset. Only loopback is used
and every process is stopped at the end.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AETHER = os.path.join(ROOT, "target", "release", "aether")
CHATLOAD = os.path.join(ROOT, "target", "release", "chatload")
PEERS = os.path.join(ROOT, "bench", "peers")


def raise_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))


def wait_line(process, pattern, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        line = process.stdout.readline()
        match = re.search(pattern, line)
        if match:
            return match
    sys.exit(f"server did not print {pattern!r}")


class Server:
    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class AetherServer(Server):
    name, protocol = "aether", "aether"

    def __init__(self, workdir):
        data = tempfile.mkdtemp(dir=workdir)
        env = dict(os.environ, AETHER_DATA_DIR=data, AETHER_LOG__LEVEL="warn,aether::app=info",
                   AETHER_CHAT__MESSAGES_PER_SECOND="100000", AETHER_CHAT__USER_MESSAGES_PER_SECOND="100000",
                   AETHER_CHAT__MAX_CONNECTIONS_PER_IP="100000", AETHER_CHAT__JOINS_PER_SECOND="100000")
        subprocess.run([AETHER, "admin", "create", "--username", "bench", "--email", "bench@example.com", "--password-stdin"],
                       input=b"benchmark password\n", env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([AETHER, "channel", "create", "bench_room", "--owner", "bench"], env=env, check=True, stdout=subprocess.DEVNULL)
        self.process = subprocess.Popen(["taskset", "-c", "0", AETHER, "serve", "--http-listen", "127.0.0.1:0", "--rtmp-listen", "127.0.0.1:0", "--webrtc-listen", "127.0.0.1:0"],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addr = wait_line(self.process, r"listening http=(\S+)").group(1)
        request = urllib.request.Request(f"http://{self.addr}/api/v1/auth/login", method="POST",
                                         data=json.dumps({"login": "bench", "password": "benchmark password"}).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request) as reply:
            self.token = json.load(reply)["token"]
        threading_drain(self.process)


class NodePeer(Server):
    def __init__(self, name, script, protocol, port):
        self.name, self.protocol, self.token = name, protocol, None
        self.process = subprocess.Popen(["taskset", "-c", "0", "node", os.path.join(PEERS, script), str(port)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addr = wait_line(self.process, r"listening \w+=(\S+)").group(1)
        threading_drain(self.process)


def threading_drain(process):
    import threading
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind, workdir):
    if kind == "aether":
        return AetherServer(workdir)
    if kind == "ws":
        return NodePeer("ws", "ws-server.js", "ws", free_port())
    return NodePeer("socket.io", "socketio-server.js", "socketio", free_port())


def chatload(server, *extra):
    command = ["taskset", "-c", "1", CHATLOAD, "--protocol", server.protocol, "--addr", server.addr, "--room", "bench_room",
               "--server-pid", str(server.process.pid), *extra]
    if server.token:
        command += ["--token", server.token]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT")), None)
    if line is None:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no result"]}
    return dict(pair.split("=", 1) for pair in line.split()[1:] if "=" in pair)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", default="1000,5000")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--idle", type=int, default=5000, help="idle connections for the memory figure (0 = skip)")
    parser.add_argument("--servers", default="aether,ws,socketio")
    args = parser.parse_args()
    raise_file_limit()
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "aether", "-p", "aether", "-p", "chatload"], cwd=ROOT, check=True)
    if not os.path.isdir(os.path.join(PEERS, "node_modules")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEERS, check=True)
    servers = args.servers.split(",")
    results = {}
    with tempfile.TemporaryDirectory(prefix="aether-chat-bench-") as work:
        for count in [int(c) for c in args.subscribers.split(",")]:
            for kind in servers:
                server = start(kind, work)
                try:
                    result = chatload(server, "--subscribers", str(count), "--publishers", "1", "--rate", str(args.rate),
                                      "--seconds", str(args.seconds))
                finally:
                    server.stop()
                results[(kind, count)] = result
                print(f"{kind:9} {count:5} subscribers x {args.rate:.0f} msgs/s: {result}", flush=True)
        if args.idle:
            for kind in servers:
                server = start(kind, work)
                try:
                    result = chatload(server, "--subscribers", str(args.idle), "--idle")
                finally:
                    server.stop()
                results[(kind, "idle")] = result
                print(f"{kind:9} {args.idle} idle connections: {result}", flush=True)

    print("\n| scenario | server | deliveries/s | p50 ms | p99 ms | max ms | first-arrival p99 ms | lost | closed | CPU s / million deliveries |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for count in [int(c) for c in args.subscribers.split(",")]:
        for kind in servers:
            r = results[(kind, count)]
            if "error" in r:
                print(f"| {count} x {args.rate:.0f}/s | {kind} | error: {r['error']} ||||||||")
                continue
            print(f"| {count} x {args.rate:.0f}/s | {kind} | {r['deliveries_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['first_p99_ms']} | "
                  f"{r['lost']} | {r['closed_by_server']} | {r['cpu_s_per_million']} |")
    if args.idle:
        print(f"\n| idle connections ({args.idle}) | server RSS per connection KiB |")
        print("|---|---|")
        for kind in servers:
            r = results[(kind, "idle")]
            print(f"| {kind} | {r.get('per_connection_kib', r)} |")


if __name__ == "__main__":
    main()
