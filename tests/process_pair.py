"""Run two Python processes so that their work overlaps in time (the two-process store tests).

Each child gets its argv plus two paths: a shared `go` file it waits for and its own `ready` file it
creates once set up; the children start their work together when both are ready. Each must print
"<start> <end>" (time.time() around its work) as the first two words of its stdout.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_pair(script: str, argvs: list[list[str]], tmp_path: Path, timeout: float = 120.0) -> list[str]:
    """Start `python -c script *argv go ready` for both argvs, release them together, and return their
    stdouts; asserts both exited 0 and that their timed work overlapped."""
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(len(argvs))]
    procs = [subprocess.Popen([sys.executable, "-c", script, *argv, str(go), str(r)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv, r in zip(argvs, ready)]
    deadline = time.time() + timeout
    while not all(r.exists() for r in ready) and time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=timeout) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), [err for _, err in outputs]
    spans = [tuple(map(float, out.split()[:2])) for out, _ in outputs]
    assert max(a for a, _ in spans) < min(b for _, b in spans), "the processes did not overlap in time"
    return [out for out, _ in outputs]
