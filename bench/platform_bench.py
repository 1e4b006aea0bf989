#!/usr/bin/env python3
"""Platform benchmarks on SQLite and PostgreSQL, side by side in one run (issue 14):

1. Go-live fan-out: a channel with N followers (100,000 by default; every one with a verified
   address and email on) goes live (ffmpeg publishing over RTMP); measured: the time from the
   stream session's start to every in-app notification stored and to every go-live email job
   queued, the notification rows per second, and the server's peak RSS (VmHWM) against its
   idle RSS.
2. Search: 100,000 channels and 1,000,000 public VODs with titles drawn from a word list; p50 /
   p99 / max latency of GET /api/v1/search for one- and two-word prefix queries (channels and
   vods), one client, over HTTP.

    python3 bench/platform_bench.py                          # both databases, full scale
    python3 bench/platform_bench.py --followers 20000 --channels 20000 --vods 200000 --db sqlite

The rows are written straight into the database (as `aether migrate` left it) before the
server starts: signing up 100,000 users over HTTP would measure argon2, not the fan-out. Email
points at a closed port: jobs are queued (what is measured), not sent. PostgreSQL runs from a
temp dir on a free port (initdb, as scripts/services.sh does), or at AETHER_BENCH_POSTGRES_URL.
Needs the release build of aether (made if missing), ffmpeg and PostgreSQL.
"""

import argparse
import csv
import io
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_ingest import BINARY, ROOT, free_port, serve  # noqa: E402

WORDS = ("bread ramen pasta sushi curry pizza tacos salad soup cake cookie coffee tea chess poker "
         "speedrun minecraft zelda mario tetris doom quake racing football tennis golf yoga dance "
         "music guitar piano drums jazz rock metal techno painting drawing pottery knitting coding "
         "rust python linux gardening camping fishing hiking travel paris tokyo berlin lisbon news "
         "science space rockets physics history books poetry cinema anime comics retro arcade").split()


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


class Postgres:
    def __init__(self, workdir):
        self.url = os.environ.get("AETHER_BENCH_POSTGRES_URL")
        self.data = None
        if self.url:
            return
        bindir = sorted(p for p in os.listdir("/usr/lib/postgresql"))[-1]
        self.bin = f"/usr/lib/postgresql/{bindir}/bin"
        self.data = os.path.join(workdir, "pg")
        os.makedirs(self.data)
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
            os.chmod(workdir, 0o755)
        self.as_user = as_user
        port = free_port()
        run(as_user + [f"{self.bin}/initdb", "-D", f"{self.data}/data", "-U", "postgres", "-A", "trust", "--no-sync"],
            stdout=subprocess.DEVNULL)
        run(as_user + [f"{self.bin}/pg_ctl", "-D", f"{self.data}/data", "-l", f"{self.data}/log", "-w", "start", "-o",
                       f"-p {port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"],
            stdout=subprocess.DEVNULL)
        self.url = f"postgres://postgres@127.0.0.1:{port}/postgres"

    def database(self, name):
        run(["psql", self.url, "-qc", f"DROP DATABASE IF EXISTS {name}"], stdout=subprocess.DEVNULL)
        run(["psql", self.url, "-qc", f"CREATE DATABASE {name}"], stdout=subprocess.DEVNULL)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def close(self):
        if self.data:
            run(self.as_user + [f"{self.bin}/pg_ctl", "-D", f"{self.data}/data", "-m", "immediate", "-w", "stop"],
                stdout=subprocess.DEVNULL)


class Db:
    """The bench's own connection for loading rows and counting: sqlite3, or psql."""

    def __init__(self, kind, target):
        self.kind, self.target = kind, target

    def sql(self, statement):
        if self.kind == "sqlite":
            con = sqlite3.connect(self.target)
            try:
                cur = con.execute(statement)
                rows = cur.fetchall()
                con.commit()
                return rows
            finally:
                con.close()
        out = run(["psql", self.target, "-qAtc", statement], capture_output=True, text=True).stdout
        return [tuple(line.split("|")) for line in out.splitlines() if line]

    def scalar(self, statement):
        return int(self.sql(statement)[0][0])

    def copy(self, table, columns, rows):
        """Bulk-loads `rows` (tuples) into `table`."""
        if self.kind == "sqlite":
            con = sqlite3.connect(self.target)
            con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)
            con.commit()
            con.close()
            return
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        run(["psql", self.target, "-qc", f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)"],
            input=buf.getvalue(), text=True, stdout=subprocess.DEVNULL)


def vm(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(workdir, kind, database_url, smtp_port):
    env = dict(os.environ, AETHER_DATA_DIR=os.path.join(workdir, "data"), AETHER_LOG__LEVEL="warn,aether::app=info",
               AETHER_TRANSCODE__ENABLED="false", AETHER_EMAIL__ENABLED="true", AETHER_EMAIL__HOST="127.0.0.1",
               AETHER_EMAIL__PORT=str(smtp_port), AETHER_EMAIL__SECURITY="none")
    env.pop("AETHER_DATABASE__URL", None)
    if database_url:
        env["AETHER_DATABASE__URL"] = database_url
    run([BINARY, "migrate"], env=env, stdout=subprocess.DEVNULL)
    return env


def fanout(kind, workdir, pg, followers):
    db_path = os.path.join(workdir, "data", "aether.db")
    url = pg.database("bench_fanout") if kind == "postgres" else None
    env = start(workdir, kind, url, free_port())
    db = Db(kind, url or db_path)
    now = int(time.time() * 1000)
    db.copy("users", ["username", "email", "password_hash", "created_at", "email_verified_at"],
            [(f"u{i}", f"u{i}@example.com", "x", now, now) for i in range(followers + 1)])
    owner = db.scalar("SELECT id FROM users WHERE username = 'u0'")
    # The channel's stream key: a known key's hash (channels::keys hashes with SHA-256, hex).
    import hashlib
    key = "bench_live_" + "0123456789abcdef" * 2 + "01234567"  # {channel}_{40 hex}
    db.sql(f"INSERT INTO channels (owner_id, name, title, stream_key_hash, created_at, updated_at) "
           f"VALUES ({owner}, 'bench_live', 'Fan-out', '{hashlib.sha256(key.encode()).hexdigest()}', {now}, {now})")
    channel = db.scalar("SELECT id FROM channels WHERE name = 'bench_live'")
    db.sql(f"INSERT INTO follows (user_id, channel_id, created_at) SELECT id, {channel}, {now} FROM users WHERE id <> {owner}")
    assert db.scalar("SELECT COUNT(*) FROM follows") == followers
    proc, http, rtmp = serve(env)
    try:
        time.sleep(1)
        idle = vm(proc.pid, "VmRSS")
        publisher = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
             "-t", "600", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-f", "flv", f"rtmp://{rtmp}/live/{key}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = None
        done_notes = done_mail = None
        deadline = time.time() + 600
        while time.time() < deadline and (done_notes is None or done_mail is None):
            time.sleep(0.2)
            if started is None:
                rows = db.sql("SELECT started_at FROM stream_sessions")
                if rows:
                    started = int(rows[0][0]) / 1000
                continue
            if done_notes is None and db.scalar("SELECT COUNT(*) FROM notifications") >= followers:
                done_notes = time.time() - started
            if done_mail is None and db.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'email.send'") >= followers:
                done_mail = time.time() - started
        peak = vm(proc.pid, "VmHWM")
        publisher.terminate()
        publisher.wait()
        made = db.scalar("SELECT COUNT(*) FROM notifications")
        return {"followers": followers, "notified": made, "notifications_s": done_notes, "emails_queued_s": done_mail,
                "rows_per_s": (made / done_notes) if done_notes else None, "idle_rss_mb": idle, "peak_rss_mb": peak}
    finally:
        proc.terminate()
        proc.wait()


def search(kind, workdir, pg, channels, vods, queries):
    db_path = os.path.join(workdir, "data", "aether.db")
    url = pg.database("bench_search") if kind == "postgres" else None
    env = start(workdir, kind, url, free_port())
    db = Db(kind, url or db_path)
    rng = random.Random(7)
    now = int(time.time() * 1000)
    title = lambda: " ".join(rng.choice(WORDS) for _ in range(4))  # noqa: E731
    db.copy("users", ["username", "email", "password_hash", "created_at"],
            [(f"s{i}", f"s{i}@example.com", "x", now) for i in range(channels)])
    first_user = db.scalar("SELECT MIN(id) FROM users")
    db.copy("channels", ["owner_id", "name", "title", "category", "tags", "stream_key_hash", "created_at", "updated_at"],
            [(first_user + i, f"ch{i}", title(), rng.choice(WORDS), json.dumps([rng.choice(WORDS)]), f"h{i}", now, now)
             for i in range(channels)])
    first_channel = db.scalar("SELECT MIN(id) FROM channels")
    batch = 200_000
    for start_at in range(0, vods, batch):
        n = min(batch, vods - start_at)
        db.copy("stream_sessions", ["channel_id", "started_at", "ended_at"],
                [(first_channel + (start_at + i) % channels, now, now) for i in range(n)])
    first_session = db.scalar("SELECT MIN(id) FROM stream_sessions")
    for start_at in range(0, vods, batch):
        n = min(batch, vods - start_at)
        db.copy("vods", ["channel_id", "session_id", "public_id", "title", "status", "visibility", "created_at"],
                [(first_channel + (start_at + i) % channels, first_session + start_at + i, f"v{start_at + i:013d}",
                  title(), "ready", "public", now) for i in range(n)])
    if kind == "postgres":
        db.sql("ANALYZE")
    proc, http, _ = serve(env)
    try:
        out = {}
        for what in ("channels", "vods"):
            for words in (1, 2):
                latencies = []
                for _ in range(queries):
                    q = " ".join(rng.choice(WORDS)[: rng.randint(3, 6)] for _ in range(words))
                    path = f"http://{http}/api/v1/search?type={what}&limit=20&q={urllib.parse.quote(q)}"
                    t0 = time.perf_counter()
                    with urllib.request.urlopen(path, timeout=30) as response:
                        response.read()
                    latencies.append((time.perf_counter() - t0) * 1000)
                latencies.sort()
                out[f"{what} {words} word(s)"] = (statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1],
                                                  latencies[-1])
        return out
    finally:
        proc.terminate()
        proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="both", choices=["sqlite", "postgres", "both"])
    parser.add_argument("--followers", type=int, default=100_000)
    parser.add_argument("--channels", type=int, default=100_000)
    parser.add_argument("--vods", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300, help="per query shape")
    parser.add_argument("--skip", default="", help="fanout or search")
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        run(["cargo", "build", "--release", "--locked", "--bin", "aether"], cwd=ROOT)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    workdir = tempfile.mkdtemp(prefix="aether-bench-platform-")
    pg = Postgres(workdir) if "postgres" in kinds else None
    try:
        if "fanout" not in args.skip:
            print(f"\n## Go-live fan-out to {args.followers:,} followers\n")
            print("| database | notifications stored (s) | emails queued (s) | rows/s | idle RSS MB | peak RSS MB |")
            print("|---|---|---|---|---|---|")
            for kind in kinds:
                sub = os.path.join(workdir, f"fanout-{kind}")
                os.makedirs(sub)
                r = fanout(kind, sub, pg, args.followers)
                fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
                print(f"| {kind} | {fmt(r['notifications_s'])} | {fmt(r['emails_queued_s'])} | "
                      f"{fmt(r['rows_per_s'])} | {r['idle_rss_mb']:.1f} | {r['peak_rss_mb']:.1f} |", flush=True)
        if "search" not in args.skip:
            print(f"\n## Search over {args.channels:,} channels and {args.vods:,} VODs ({args.queries} queries each)\n")
            print("| database | query | p50 ms | p99 ms | max ms |")
            print("|---|---|---|---|---|")
            for kind in kinds:
                sub = os.path.join(workdir, f"search-{kind}")
                os.makedirs(sub)
                for shape, (p50, p99, worst) in search(kind, sub, pg, args.channels, args.vods, args.queries).items():
                    print(f"| {kind} | {shape} | {p50:.1f} | {p99:.1f} | {worst:.1f} |", flush=True)
    finally:
        if pg:
            pg.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
