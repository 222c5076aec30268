"""ACD routing decision latency under load (the sans-IO core, no SIP).

Setup (defaults): 2,000 agents with 3-6 of 20 skills each (levels 1-100), 50 queues whose
skill rules widen after 30 s ("skill >= 50", then "skill > 0"), every agent logged in and on
a call, and 5,000 callers waiting. Then a stream of events on a fake clock, one every
``--step`` seconds: a hang-up (the agent becomes free: the ACD picks the best waiting caller
over every queue the agent serves and offers it) or a new caller (matched against the free
agents), plus the timers that come due (rule widening, ring timeouts). Every ACD call is
timed with ``perf_counter_ns``; offers are answered at once so agents stay busy.

The same stream is replayed against a *naive* router in the same run — on every free agent
it sorts all waiting callers by (priority, arrival) and takes the first one the agent's
skills accept — to show what the per-queue ordered scan buys.

Goal: p99 < 1 ms per decision.

    python bench/acd.py [--agents 2000] [--queues 50] [--skills 20] [--waiting 5000]
                        [--events 20000] [--seed 1] [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from acd import Acd, AgentConfig, Offer, QueueConfig, RuleStep, parse_requirements


def build(args: argparse.Namespace) -> tuple[list[AgentConfig], list[QueueConfig]]:
    rng = random.Random(args.seed)
    skills = [f"s{i}" for i in range(args.skills)]
    agents = []
    for i in range(args.agents):
        mine = rng.sample(skills, rng.randint(3, 6))
        agents.append(AgentConfig(f"a{i}", skills={s: rng.randint(1, 100) for s in mine}))
    queues = []
    for q in range(args.queues):
        skill = skills[q % len(skills)]
        rules = (
            RuleStep(parse_requirements(f"{skill} >= 50"), wait_under=30),
            RuleStep(parse_requirements(f"{skill} > 0")),
        )
        queues.append(QueueConfig(f"q{q}", skill_rules=rules, ring_timeout=15, retry_delay=1))
    return agents, queues


def answer_offers(acd: Acd, now: float, busy: list[str], talking: dict[str, str]) -> None:
    for action in acd.drain():
        if isinstance(action, Offer):
            acd.answered(action.call, action.agent, now)
            talking[action.agent] = action.call
            busy.append(action.agent)
    acd.drain()


def run_acd(args: argparse.Namespace) -> dict[str, list[int]]:
    agents, queues = build(args)
    acd = Acd(agents, queues, seed=args.seed)
    rng = random.Random(args.seed + 1)
    now = 1_000_000.0
    busy: list[str] = []
    talking: dict[str, str] = {}
    for a in agents:
        acd.login(a.id, now)
    acd.drain()
    n = 0
    # Fill: every agent on a call and the waiting callers in place. Low-skill agents only get
    # callers whose rules widened, so the clock jumps past the widening now and then.
    for _ in range(100_000):
        waiting = len(acd.calls) - len(talking)
        if len(talking) >= len(agents) and waiting >= args.waiting:
            break
        if waiting >= args.waiting:
            now += 31.0
            acd.tick(now)
            answer_offers(acd, now, busy, talking)
            continue
        acd.enqueue(f"c{n}", f"q{rng.randrange(len(queues))}", f"555{n}", now)
        answer_offers(acd, now, busy, talking)
        n += 1
        now += 0.001
    acd.drain_events()
    acd.drain_agent_log()
    times: dict[str, list[int]] = {"hangup": [], "arrival": [], "timers": []}
    for _ in range(args.events):
        now += args.step
        deadline = acd.next_deadline()
        if deadline is not None and deadline <= now:
            t0 = time.perf_counter_ns()
            ran = acd.tick(now)
            times["timers"].append((time.perf_counter_ns() - t0) // max(ran, 1))
            answer_offers(acd, now, busy, talking)
        if rng.random() < 0.5 and busy:
            agent = busy.pop(rng.randrange(len(busy)))
            call = talking.pop(agent)
            t0 = time.perf_counter_ns()
            acd.call_completed(call, now, "caller")  # the agent is free: pick the next caller
            times["hangup"].append(time.perf_counter_ns() - t0)
        else:
            t0 = time.perf_counter_ns()
            acd.enqueue(f"c{n}", f"q{rng.randrange(len(queues))}", f"555{n}", now)
            times["arrival"].append(time.perf_counter_ns() - t0)
            n += 1
        answer_offers(acd, now, busy, talking)
        acd.drain_events()
        acd.drain_agent_log()
    waiting = sum(len(q.waiting) for q in acd.queues.values())
    print(f"  end state: {waiting} waiting, {len(talking)} agents talking")
    return times


def run_naive(args: argparse.Namespace) -> list[int]:
    """The baseline: on each freed agent, sort every waiting caller and scan."""
    agents, queues = build(args)
    rules = {q.name: q.skill_rules for q in queues}
    rng = random.Random(args.seed + 1)
    waiting: list[tuple[int, float, int, str]] = []  # (-priority, arrival, seq, queue)
    for i in range(args.waiting):
        waiting.append((0, float(i), i, f"q{rng.randrange(len(queues))}"))
    out = []
    now = float(args.waiting)
    for i in range(min(args.events // 2, 5000)):
        agent = agents[rng.randrange(len(agents))]
        t0 = time.perf_counter_ns()
        best = None
        for entry in sorted(waiting):
            steps = rules[entry[3]]
            step = steps[0] if now - entry[1] < 30 else steps[-1]
            if step.holds(agent.skills, {}):
                best = entry
                break
        if best is not None:
            waiting.remove(best)
        out.append(time.perf_counter_ns() - t0)
        waiting.append((0, now, args.waiting + i, f"q{rng.randrange(len(queues))}"))
        now += args.step
    return out


def pct(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--skills", type=int, default=20)
    parser.add_argument("--waiting", type=int, default=5000)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--step", type=float, default=0.05, help="fake seconds between events")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.events = 5000
    print(
        f"ACD: {args.agents} agents, {args.skills} skills, {args.queues} queues, "
        f"{args.waiting} waiting, {args.events} events"
    )
    t0 = time.monotonic()
    times = run_acd(args)
    print(f"  switchboard run: {time.monotonic() - t0:.1f} s")
    t0 = time.monotonic()
    naive = run_naive(args)
    print(f"  naive run: {time.monotonic() - t0:.1f} s")
    decisions = times["hangup"] + times["arrival"]
    print()
    print(f"{'router':<28} {'n':>7} {'p50 µs':>9} {'p99 µs':>9} {'max µs':>9}")
    rows = [
        ("switchboard: agent freed", times["hangup"]),
        ("switchboard: caller arrives", times["arrival"]),
        ("switchboard: all decisions", decisions),
        ("switchboard: per timer", times["timers"]),
        ("naive sort+scan: agent freed", naive),
    ]
    for name, values in rows:
        print(
            f"{name:<28} {len(values):>7} {pct(values, 50):>9.1f} {pct(values, 99):>9.1f} "
            f"{(max(values) / 1000.0 if values else float('nan')):>9.1f}"
        )
    p99 = pct(decisions, 99)
    verdict = "met" if p99 < 1000 else "NOT met"
    print(f"\ngoal p99 < 1 ms per decision: {verdict} (p99 {p99:.0f} µs)")
    print(f"naive p99 / switchboard p99: {pct(naive, 99) / max(p99, 0.001):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
