"""Where an ansible-playbook run spent its time, from its own log (issue 18: profile first).

ansible.cfg enables the `profile_tasks` callback: before each task header it prints a banner
`<date> (H:MM:SS.sss)  H:MM:SS.sss ****` whose parenthesised part is the duration of the task that
just ended. Skipped tasks print no header (display_skipped_hosts = false) but still a banner, so a
banner's duration belongs to the last header above it.

    fms-ansible-profile .lab/logs/ansible-primary-site-*.log [--top 30] [--plot build/profile.png]

Prints seconds per play, per role and the slowest tasks; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

HEADER = re.compile(r"^(TASK|RUNNING HANDLER|PLAY) \[(.*?)\] \*")
BANNER = re.compile(r"\((\d+):(\d{2}):(\d{2}(?:\.\d+)?)\)\s+\d+:\d{2}:\d{2}(?:\.\d+)? \*")
PLAY_TOOK = re.compile(r"Playbook run took (\d+) days, (\d+) hours, (\d+) minutes, (\d+) seconds")


@dataclass
class Profile:
    """Seconds per task (play, task name) of one run; per play and per role are sums of those."""

    tasks: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    steps: int = 0
    wall_s: float | None = None

    @property
    def plays(self) -> dict[str, float]:
        return _sum_by(self.tasks, lambda play, _task: play)

    @property
    def roles(self) -> dict[str, float]:
        return _sum_by(self.tasks, lambda _play, task: _role_of(task))

    @property
    def total_s(self) -> float:
        return sum(self.tasks.values())

    def slowest(self, top: int) -> list[tuple[str, str, float]]:
        ranked = sorted(self.tasks.items(), key=lambda kv: -kv[1])[:top]
        return [(play, task, seconds) for (play, task), seconds in ranked]

    def summary(self, top: int) -> dict[str, object]:
        return {
            "total_s": round(self.total_s, 1),
            "wall_s": self.wall_s,
            "steps": self.steps,
            "plays": {k: round(v, 1) for k, v in sorted(self.plays.items(), key=lambda kv: -kv[1])},
            "roles": {k: round(v, 1) for k, v in sorted(self.roles.items(), key=lambda kv: -kv[1])},
            "slowest": [{"play": p, "task": t, "s": round(s, 1)} for p, t, s in self.slowest(top)],
        }


def _sum_by(tasks: dict[tuple[str, str], float], key: Callable[[str, str], str]) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    for (play, task), seconds in tasks.items():
        sums[key(play, task)] += seconds
    return dict(sums)


def _role_of(task: str) -> str:
    """`kafka : Write server.properties` -> kafka; a play's own task -> (play)."""
    role, sep, _ = task.partition(" : ")
    return role if sep else "(play)"


def parse(lines: Iterable[str]) -> Profile:
    profile = Profile()
    play, task = "(before the first play)", "(start)"
    for line in lines:
        header = HEADER.match(line)
        if header:
            kind, name = header.groups()
            if kind == "PLAY":
                play, task = name, "(play start)"
            else:
                task = name
            continue
        banner = BANNER.search(line)
        if banner:
            h, m, s = banner.groups()
            seconds = int(h) * 3600 + int(m) * 60 + float(s)
            profile.tasks[(play, task)] += seconds
            profile.steps += 1
            continue
        took = PLAY_TOOK.search(line)
        if took:
            d, h, m, s = (int(x) for x in took.groups())
            profile.wall_s = float(((d * 24 + h) * 60 + m) * 60 + s)
    return profile


def render(profile: Profile, top: int) -> str:
    out = [f"total {profile.total_s:.0f} s in {profile.steps} task steps (playbook wall {profile.wall_s} s)"]
    out.append("-- seconds per play")
    out += [f"{s:8.1f}  {p}" for p, s in sorted(profile.plays.items(), key=lambda kv: -kv[1])]
    out.append("-- seconds per role")
    out += [f"{s:8.1f}  {r}" for r, s in sorted(profile.roles.items(), key=lambda kv: -kv[1])]
    out.append(f"-- the {top} slowest tasks")
    out += [f"{s:8.1f}  {t}  <{p}>" for p, t, s in profile.slowest(top)]
    return "\n".join(out)


def plot(profile: Profile, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plays = sorted(profile.plays.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(plays) + 1.5))
    ax.barh([p[:60] for p, _ in plays], [s for _, s in plays])
    ax.set_xlabel("seconds")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fms-ansible-profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("log", type=Path, help="an ansible-playbook log written with the profile_tasks callback")
    ap.add_argument("--top", type=int, default=30, help="how many of the slowest tasks to list")
    ap.add_argument("--plot", type=Path, help="write a bar chart of seconds per play (PNG)")
    args = ap.parse_args(argv)
    if not args.log.is_file():
        print(f"fms-ansible-profile: {args.log}: no such file", file=sys.stderr)
        return 2
    profile = parse(args.log.read_text(errors="replace").splitlines())
    if profile.steps == 0:
        print(
            f"fms-ansible-profile: {args.log}: no profile_tasks banners (is the callback enabled?)",
            file=sys.stderr,
        )
        return 2
    print(render(profile, args.top))
    if args.plot:
        plot(profile, args.plot, args.log.name)
        print(f"plot: {args.plot}")
    print(json.dumps(profile.summary(args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
