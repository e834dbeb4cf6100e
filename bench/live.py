"""Live inbox benchmark: idle connections held by one ASGI process, and commit-to-client latency.

    .venv/bin/python bench/live.py [--connections 1000,10000] [--rate 100] [--seconds 20]

One uvicorn process (uvloop, httptools, websockets-sansio: what uvicorn picks by itself) serves
notifycenter.asgi on PostgreSQL and Redis. Per step, N idle WebSocket clients, each a different
person, authenticated by the Authorization header, answering the server's WebSocket pings (a
minimal client in a separate process, so the measured server is alone in its process):
- memory: the server's RSS with N connections held, minus its RSS with one, divided by N;
- latency at the last step: 50 people with a live connection each, a writer process putting
  `--rate` inbox messages a second among them through inbox_message_put for `--seconds`; each
  latency is from the write's commit (an on_commit hook registered before the publish) to the
  client holding the parsed frame.
Peers, in the same run on the same machine:
- memory: a bare ASGI WebSocket app (accept, wait for the close) on the same uvicorn, with the
  same N clients: what the server and protocol cost before our code;
- latency: a bare Redis pub/sub round trip (redis-py publish, redis.asyncio subscriber on 50
  channels) at the same rate: the floor of any Redis fan-out.
Needs PostgreSQL and Redis (DATABASE_URL / REDIS_URL as `make test`); creates and drops its own
database `<name>_live_bench`; uses port 8200 (--port).
"""

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
PY = sys.executable

from ingest import db_url_for, reset_database  # noqa: E402  (bench/ingest.py, beside this script)
from table import print_table  # noqa: E402

BASE_DB = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/notifycenter")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
SECRET = "bench-only-secret-of-sufficient-length-for-hs256"
ACTIVE = 50  # people receiving the timed messages

PEER_APP = """
async def app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass
"""


def env() -> dict:
    return {
        **os.environ,
        "DATABASE_URL": db_url_for(BASE_DB, urlname(BASE_DB) + "_live_bench"),
        "REDIS_URL": REDIS,
        "DJANGO_SETTINGS_MODULE": "notifycenter.settings",
        "DJANGO_SECRET_KEY": "bench-only",
        "INBOX_JWT_SECRET": SECRET,
        "FIELD_ENCRYPTION_KEYS": "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy0wMDA=",
        "NOTIFYCENTER_DATA_DIR": tempfile.gettempdir() + "/nc-live-bench",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}",
    }


def urlname(url: str) -> str:
    from urllib.parse import urlparse

    return urlparse(url).path.lstrip("/")


def token(person: str) -> str:
    import jwt

    claims = {"sub": person, "role": "patient", "aud": "notifycenter", "exp": int(time.time()) + 3 * 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def serve(app: str, port: int, app_dir: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            str(Path(PY).parent / "uvicorn"),
            app,
            "--app-dir",
            str(app_dir),
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--ws",
            "websockets-sansio",
            "--lifespan",
            "off",
            "--no-access-log",
            "--backlog",
            "4096",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env(),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited (port {port} taken?)")
        try:
            with __import__("socket").create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("uvicorn did not come up")


# --- the holders: N idle WebSocket clients in their own process -------------------------------


async def hold_one(port: int, person: str, ready: asyncio.Semaphore, peer: bool) -> None:
    """One idle client: the handshake, then answering pings. It counts as held once the server
    sent its first frame (ours: `ready`), or, for the bare peer that sends nothing, once the
    handshake is through."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /api/v1/inbox/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token(person)}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head[:200])
    waiting = True
    if peer:
        ready.release()
        waiting = False
    while True:
        b1, b2 = await reader.readexactly(2)
        size = b2 & 0x7F
        if size == 126:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(size)
        opcode = b1 & 0x0F
        if opcode == 0x9:  # ping: answer with a masked pong, as every client must
            mask = os.urandom(4)
            body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            writer.write(bytes([0x8A, 0x80 | len(payload)]) + mask + body)
        elif opcode == 0x8:
            return
        elif waiting:
            waiting = False
            ready.release()


async def holders_main(port: int, count: int, offset: int, peer: bool) -> None:
    ready = asyncio.Semaphore(0)
    t0 = time.monotonic()
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(hold_one(port, f"idle-{offset + i}", ready, peer)))
        if i % 100 == 99:
            await asyncio.sleep(0.01)  # connects in waves, not 10,000 SYNs at once
    got = 0
    while got < count and time.monotonic() - t0 < 60 + count / 100:
        try:
            await asyncio.wait_for(ready.acquire(), 5)
        except TimeoutError:
            if all(t.done() for t in tasks):
                break
            continue
        got += 1
    failed = sum(1 for t in tasks if t.done())
    print(
        json.dumps({"held": min(got, count - failed), "failed": failed, "seconds": time.monotonic() - t0}), flush=True
    )
    await asyncio.Event().wait()


def start_holders(port: int, count: int, offset: int = 0, peer: bool = False) -> tuple[subprocess.Popen, dict]:
    holder = subprocess.Popen(
        [PY, __file__, "--role", "holders", "--port", str(port), "--count", str(count), "--offset", str(offset)]
        + (["--peer"] if peer else []),
        env=env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    line = holder.stdout.readline()
    return holder, json.loads(line)


# --- the writer: timed inbox writes in a Django process --------------------------------------


def writer_main(rate: int, seconds: float, out: str, peer: bool) -> None:
    if peer:
        import redis

        client = redis.Redis.from_url(REDIS)
        stamps = {}
        start = time.time()
        for n in range(int(rate * seconds)):
            time.sleep(max(0, start + n / rate - time.time()))
            stamps[n] = time.time()
            client.publish(f"bench-peer:{n % ACTIVE}", json.dumps({"n": n}))
        Path(out).write_text(json.dumps(stamps))
        return
    import django

    django.setup()
    from django.db import transaction

    from inbox.services import inbox_message_put

    stamps = {}
    start = time.time()
    for n in range(int(rate * seconds)):
        time.sleep(max(0, start + n / rate - time.time()))
        with transaction.atomic():
            # Registered before inbox_message_put's publish hook: it runs first, right after commit.
            transaction.on_commit(lambda n=n: stamps.__setitem__(n, time.time()))
            inbox_message_put(
                audience="patient",
                recipient_id=f"active-{n % ACTIVE}",
                title=f"bench {n}",
                body="您有一条新的问诊消息，请及时查看。",
                category="consultation",
                link={},
                source_key=f"live-bench-{start}-{n}",
            )
    Path(out).write_text(json.dumps(stamps))


def run_writer(rate, seconds, peer=False) -> dict:
    fd, out = tempfile.mkstemp(prefix="nc-live-stamps-")
    os.close(fd)
    subprocess.run(
        [PY, __file__, "--role", "writer", "--rate", str(rate), "--seconds", str(seconds), "--out", out]
        + (["--peer"] if peer else []),
        env=env(),
        check=True,
    )
    stamps = {int(k): v for k, v in json.loads(Path(out).read_text()).items()}
    os.unlink(out)
    return stamps


async def receive_ours(port: int, expected: int, received: dict, ready: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    async def one(i):
        async with connect(
            f"ws://127.0.0.1:{port}/api/v1/inbox/live",
            additional_headers={"Authorization": f"Bearer {token(f'active-{i}')}"},
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            counter["ready"] += 1
            if counter["ready"] == ACTIVE:
                ready.set()
            async for text in ws:
                frame = json.loads(text)
                if frame["type"] == "message.created":
                    received[int(frame["data"]["message"]["title"].split()[1])] = time.time()
                    if len(received) >= expected:
                        return

    counter = {"ready": 0}
    tasks = [asyncio.create_task(one(i)) for i in range(ACTIVE)]
    await asyncio.wait(tasks, timeout=None, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()


async def receive_peer(expected: int, received: dict, ready: asyncio.Event) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(*[f"bench-peer:{i}" for i in range(ACTIVE)])
    ready.set()
    async for message in pubsub.listen():
        if message["type"] == "message":
            received[json.loads(message["data"])["n"]] = time.time()
            if len(received) >= expected:
                break
    await client.aclose()


def latency(port, rate, seconds, peer=False) -> tuple[float, float, int, int]:
    expected = int(rate * seconds)
    received: dict = {}

    async def main():
        ready = asyncio.Event()
        receiver = asyncio.create_task(
            receive_peer(expected, received, ready) if peer else receive_ours(port, expected, received, ready)
        )
        await ready.wait()
        stamps = await asyncio.to_thread(run_writer, rate, seconds, peer)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver, 10)
        return stamps

    stamps = asyncio.run(main())
    took = sorted((received[n] - stamps[n]) * 1000 for n in stamps if n in received)
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    return statistics.median(took), p99, len(took), expected


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", default="main", choices=["main", "holders", "writer"])
    ap.add_argument("--connections", default="1000,10000")
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--port", type=int, default=8200)
    ap.add_argument("--count", type=int)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--out")
    ap.add_argument("--peer", action="store_true")
    args = ap.parse_args()
    if args.role == "holders":
        import uvloop

        uvloop.run(holders_main(args.port, args.count, args.offset, args.peer))
        return
    if args.role == "writer":
        writer_main(args.rate, args.seconds, args.out, args.peer)
        return

    steps = [int(n) for n in args.connections.split(",")]
    reset_database(env()["DATABASE_URL"])
    subprocess.run([PY, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env(), check=True)
    peer_dir = Path(tempfile.mkdtemp(prefix="nc-live-peer-"))
    (peer_dir / "live_peer_app.py").write_text(PEER_APP)
    rows = []
    lat = {}
    for label, app, peer in (("ours", "notifycenter.asgi:application", False), ("peer", "live_peer_app:app", True)):
        server = serve(app, args.port, app_dir=peer_dir if peer else ROOT)
        holders = []
        try:
            # One connection first, so the base includes the hub, its Redis and its threads.
            warm, _ = start_holders(args.port, 1, offset=10_000_000, peer=peer)
            holders.append(warm)
            time.sleep(1)
            base = rss_kb(server.pid)
            held = 0
            for n in steps:
                holder, got = start_holders(args.port, n - held, offset=held, peer=peer)
                holders.append(holder)
                held += got["held"]
                time.sleep(2)
                rss = rss_kb(server.pid)
                rows.append(
                    (
                        label,
                        f"{n:,}",
                        f"{held:,}",
                        f"{got['seconds']:.1f}",
                        f"{rss / 1024:.0f}",
                        f"{(rss - base) / max(1, held - 1):.1f}",
                    )
                )
                print(rows[-1], flush=True)
            if not peer:
                lat["ours"] = latency(args.port, args.rate, args.seconds)
        finally:
            for holder in holders:
                holder.send_signal(signal.SIGTERM)
                holder.wait(30)
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    lat["peer"] = latency(args.port, args.rate, args.seconds, peer=True)

    print("\nIdle connections on one uvicorn process:")
    head = ("server", "connections", "held", "connect s", "RSS MB", "KB per connection")
    print_table(head, rows)
    ours_kb = {r[1]: float(r[5]) for r in rows if r[0] == "ours"}
    peer_kb = {r[1]: float(r[5]) for r in rows if r[0] == "peer"}
    print()
    print_table(
        ("connections", "ours KB/conn", "bare ASGI WebSocket KB/conn", "ours/peer"),
        [(n, f"{ours_kb[n]:.1f}", f"{peer_kb[n]:.1f}", f"{ours_kb[n] / peer_kb[n]:.1f}×") for n in ours_kb],
    )
    o50, o99, on, oexp = lat["ours"]
    p50, p99, pn, pexp = lat["peer"]
    print(f"\nCommit to client at {args.rate} events/s for {args.seconds:.0f} s, {steps[-1]:,} idle connections held:")
    print_table(
        ("path", "p50 ms", "p99 ms", "received", "target"),
        [
            ("ours: inbox write → Redis → hub → WebSocket", f"{o50:.1f}", f"{o99:.1f}", f"{on}/{oexp}", "p99 ≤ 200 ms"),
            ("peer: bare Redis publish → subscriber", f"{p50:.1f}", f"{p99:.1f}", f"{pn}/{pexp}", ""),
            ("ours/peer", f"{o50 / p50:.1f}×", f"{o99 / p99:.1f}×", "", ""),
        ],
    )
    print(
        f"\n{os.cpu_count()} cores; uvicorn 1 process (uvloop, httptools, websockets-sansio); "
        "PostgreSQL and Redis local"
    )


if __name__ == "__main__":
    main()
