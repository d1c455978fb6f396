"""`--profile DIR`: sample the server workers with py-spy during the `pay` scenario and summarise where
the time goes (py-spy is optional: `.venv/bin/pip install py-spy`).

Two views: `wall` samples every thread that is not idle (a thread waiting on PostgreSQL counts: that
is latency), `gil` samples only the thread holding the GIL (that is the CPU a worker process spends
in Python). Sampling is non-blocking but costs CPU, so the profiled run's figures are a bit lower.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Threads parked waiting for work, not serving a call.
IDLE = re.compile(r"^(Condition\.wait|Event\.wait|Thread\.join|_worker \(.*concurrent/futures/thread\.py:81\)|"
                  r"_serve \(.*grpc/_server\.py:1336\))")
VIEWS = {"wall": [], "gil": ["--gil"]}


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Profiler:
    """`py-spy record --format raw` on each pid, both views, for `seconds` from now."""

    def __init__(self, pids: list[int], seconds: float, directory: Path, label: str) -> None:
        self.directory, self.label = directory, label
        self.outputs: dict[str, list[Path]] = {view: [] for view in VIEWS}
        self.procs: list[subprocess.Popen[bytes]] = []
        exe = py_spy()
        if exe is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        for pid in pids:
            for view, flags in VIEWS.items():
                out = directory / f"{label}-{view}-{pid}.raw"
                self.outputs[view].append(out)
                self.procs.append(subprocess.Popen(  # noqa: S603 - py-spy on our own server's pids
                    [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "250",
                     "--nonblocking", "--full-filenames", "--format", "raw", "--output", str(out), *flags],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def finish(self) -> Path | None:
        for proc in self.procs:
            proc.wait(120)
        parts = []
        for view, paths in self.outputs.items():
            found = [p for p in paths if p.exists()]
            if found:
                parts.append(summarise(view, found))
        if not parts:
            return None
        summary = self.directory / f"{self.label}-summary.txt"
        summary.write_text("\n".join(parts))
        return summary


def short(frame: str) -> str:
    """`fn (/…/site-packages/pkg/mod.py:12)` → `fn (pkg/mod.py:12)`; payhub files keep `payhub/…`."""
    return re.sub(r"\((?:/[^()]*?/(?:site-packages|lib/python3\.\d+)/|/[^()]*?/(?=payhub/))", "(", frame)


def summarise(view: str, paths: list[Path], top: int = 30) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    deepest: Counter[str] = Counter()   # the last payhub frame: the line of payhub code the time is under
    busy = idle = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            frames = [short(f) for f in stack.split(";")]
            n = int(count)
            if view == "wall" and IDLE.match(frames[-1]):
                idle += n
                continue
            busy += n
            for frame in set(frames):
                inclusive[frame] += n
            own[frames[-1]] += n
            ours = [f for f in frames if "(payhub/" in f]
            if ours:
                deepest[f"{ours[-1]}  <- {ours[-2]}" if len(ours) > 1 else ours[-1]] += n

    def pct(n: int) -> str:
        return f"{100 * n / max(busy, 1):5.1f}%"

    mine = [(f, n) for f, n in inclusive.most_common() if "(payhub/" in f][:top]
    lines = [f"== {view}: {busy} samples" + (f" ({idle} idle dropped)" if view == "wall" else "")
             + f" from {len(paths)} process(es)",
             "-- deepest payhub frame (and its caller):", *(f"{pct(n)}  {f}" for f, n in deepest.most_common(top)),
             "-- payhub frames, inclusive:", *(f"{pct(n)}  {f}" for f, n in mine),
             "-- all frames, inclusive:", *(f"{pct(n)}  {f}" for f, n in inclusive.most_common(top)),
             "-- all frames, self:", *(f"{pct(n)}  {f}" for f, n in own.most_common(top)), ""]
    return "\n".join(lines)
