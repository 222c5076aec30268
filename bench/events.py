"""Event stream latency: an agent's state change, from the API request that makes it to its
arrival at every connected WebSocket client, with 1 and with 200 clients in the same run.

Each client is authenticated with a bearer token: half are supervisors (they see every
agent's states), half are agents (they see their own: only the clients of the agent whose
state changes receive it, so the fan-out filter is exercised too). The agents' states are
changed through ``POST /api/agents/{id}/pause|unpause`` at ``--rate`` per second; latency is
measured from just before the request is sent to the moment each client has parsed the
event. Clients and server share this machine's two cores, so the figures include the
clients' own work.

Goal (issue 11): p99 under 100 ms with 200 clients.

    python bench/events.py [--quick] [--clients 200] [--changes 200] [--rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import SetupError, percentile, print_table, start_switchboard

AGENTS = 10


def _config() -> tuple[dict[str, dict[str, object]], str]:
    extensions: dict[str, dict[str, object]] = {
        str(2000 + i): {"password": f"pw-{2000 + i}-bench"} for i in range(AGENTS)
    }
    agents = "".join(f'  a{i}: {{extensions: ["{2000 + i}"]}}\n' for i in range(AGENTS))
    members = ", ".join(f"a{i}" for i in range(AGENTS))
    return extensions, f"agents:\n{agents}queues:\n  q: {{members: [{members}]}}\n"


async def _client(
    url: str, token: str, arrivals: dict[str, list[float]], ready: asyncio.Event
) -> None:
    """Record when each agent_state event arrives, per agent (a connection keeps order, so
    the k-th arrival for an agent is the k-th change made to it)."""
    async with websockets.connect(f"{url}?token={token}", max_queue=None) as ws:
        ready.set()
        async for message in ws:
            now = time.perf_counter()
            event = json.loads(message)
            if event.get("type") == "agent_state":
                arrivals.setdefault(event["agent"], []).append(now)


async def _measure(
    api: str, ws_url: str, admin: str, tokens: list[str], changes: int, rate: float
) -> tuple[list[float], int]:
    """Latencies (s) of every delivery to every client, and the changes made."""
    per_client: list[dict[str, list[float]]] = [{} for _ in tokens]
    readies = [asyncio.Event() for _ in tokens]
    clients = [
        asyncio.ensure_future(_client(ws_url, t, a, r))
        for t, a, r in zip(tokens, per_client, readies, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    await asyncio.sleep(0.5)
    sent: dict[str, list[float]] = {}
    paused: dict[str, bool] = {}
    headers = {"Authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30.0) as http:
        for n in range(changes):
            agent = f"a{n % AGENTS}"
            action = "unpause" if paused.get(agent) else "pause"
            sent.setdefault(agent, []).append(time.perf_counter())
            (await http.post(f"/api/agents/{agent}/{action}")).raise_for_status()
            paused[agent] = action == "pause"
            await asyncio.sleep(1.0 / rate)
        for agent, is_paused in paused.items():  # leave every agent available
            if is_paused:
                (await http.post(f"/api/agents/{agent}/unpause")).raise_for_status()
    await asyncio.sleep(1.0)
    for c in clients:
        c.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    latencies = [
        arrived - sent_at
        for arrivals in per_client
        for agent, times in arrivals.items()
        for sent_at, arrived in zip(sent.get(agent, []), times, strict=False)
    ]
    return latencies, changes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    changes = args.changes // 2 if args.quick else args.changes
    extensions, extra = _config()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        try:
            sb = start_switchboard(
                Path(tmp) / "sb", extensions, extra_yaml=extra, log_level="warning"
            )
        except SetupError as exc:
            print(f"setup failed: {exc}", file=sys.stderr)
            return 2
        try:
            admin = sb.admin_token()
            api = sb.api_url
            ws_url = f"ws://127.0.0.1:{sb.http_port}/api/events/ws"
            with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {admin}"}) as c:
                for i in range(AGENTS):
                    c.post(f"/api/agents/a{i}/login").raise_for_status()
                supervisors: list[str] = []
                agents: list[str] = []
                for i in range(args.clients):
                    role = "supervisor" if i % 2 == 0 else "agent"
                    body = {"name": f"u{i}", "role": role, "password": "bench-password"}
                    if role == "agent":
                        body["agent"] = f"a{i % AGENTS}"
                    c.post("/api/users", json=body).raise_for_status()
                    token = c.post("/api/tokens", json={"user": f"u{i}"}).json()["token"]
                    (supervisors if role == "supervisor" else agents).append(token)
            for count in (1, args.clients):
                # A supervisor alone, then supervisors and agents half and half.
                tokens = supervisors[:1] if count == 1 else supervisors + agents
                print(f"{len(tokens)} client(s): {changes} state changes at {args.rate}/s ...")
                latencies, sent = asyncio.run(
                    _measure(api, ws_url, admin, tokens, changes, args.rate)
                )
                # Supervisors see every change; an agent's client sees its agent's changes.
                expected = sent * (1 if count == 1 else len(supervisors)) + (
                    0 if count == 1 else len(agents) * sent // AGENTS
                )
                rows.append(
                    [
                        str(len(tokens)),
                        f"{len(latencies)}/{expected}",
                        f"{percentile(latencies, 50) * 1000:.1f}",
                        f"{percentile(latencies, 99) * 1000:.1f}",
                        f"{max(latencies) * 1000:.1f}",
                    ]
                )
        finally:
            sb.stop()
    print_table(
        "agent state change -> WebSocket clients (ms)",
        ["clients", "delivered", "p50", "p99", "max"],
        rows,
    )
    p99 = float(rows[-1][3])
    print(f"goal p99 < 100 ms with {args.clients} clients: {'met' if p99 < 100 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
