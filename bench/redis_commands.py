"""Redis commands per handshake, counted by Redis itself: ``python -m bench.redis_commands``.

Deterministic where ``bench.handshake`` is noisy: it starts the bench's private
``redis-server`` and one daphne process serving the ``secure`` stack, opens and closes
``N`` connections one after another (each waits for the server's close, so the close-side
commands are in), and prints the delta of ``INFO commandstats`` divided by ``N``. A few
warm-up handshakes run first, so one-time work (script loads, the revocation subscription,
the channel layer's first connection) is not counted.

    .venv/bin/python -m bench.redis_commands [--count 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import redis

from bench.services import RedisServer, configure_environment, prepare_database, servers
from bench.wsclient import RawWebSocket, Target

#: Seconds the server may take to finish a connection's close-side work.
SETTLE = 1.0


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Return ``{command: calls}`` from ``INFO commandstats`` (without INFO and CONFIG)."""
    stats: dict[str, Any] = client.info("commandstats")
    calls = {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if isinstance(value, dict)
    }
    return {name: n for name, n in calls.items() if name not in {"info", "config|resetstat"}}


async def handshakes(port: int, tokens: list[str], count: int) -> None:
    """Open and close ``count`` connections one at a time, each to its server close."""
    target = Target(port=port, path="/ws/echo/", auth="bearer")
    for index in range(count):
        ws = await RawWebSocket.connect(target, tokens[index % len(tokens)])
        await ws.close()


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        configure_environment(server.url)
        tokens = prepare_database()
        client = redis.Redis.from_url(server.url)
        with servers(("secure", "daphne"), env={"BENCH_AUDIT": "1"}) as (srv,):
            asyncio.run(handshakes(srv.port, tokens, 20))
            time.sleep(SETTLE)
            client.config_resetstat()
            asyncio.run(handshakes(srv.port, tokens, args.count))
            time.sleep(SETTLE)
            calls = commandstats(client)
    finally:
        server.stop()
    total = sum(calls.values())
    print(f"{args.count} handshakes (open + close), secure stack on daphne, audit on")
    print(f"{'command':24s} {'calls':>8s} {'per handshake':>14s}")
    for name, n in sorted(calls.items(), key=lambda item: -item[1]):
        print(f"{name:24s} {n:8d} {n / args.count:14.2f}")
    print(f"{'total':24s} {total:8d} {total / args.count:14.2f}")


if __name__ == "__main__":
    main()
