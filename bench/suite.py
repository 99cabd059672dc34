"""The benchmark suite: `make bench` / `python -m bench [workload ...] [options]`.

Workloads (default: all):

  side by side with workerd (interleaved A/B, both fsync'ing):
    noop      one object, no-op, c=1 and c=32
    read      one object, read the counter, c=1 and c=32
    incr      one object, durable increment, c=1 and c=32
    objects   create N new objects (4 client threads), then increments at random over
              them at c=1 and c=32 (aliases: create, rand)
    cold      process start -> first response
    rss       RSS per resident object, N residents
    sql       100 single-row SQL INSERTs, and a 100-row SELECT as JSON, in one request;
              one object, c=1 (bench/sql_http.py)
    calls     object -> object call, per call (bench/calls_micro.py)
  dohost alone, against absolute targets:
    restart   restart -> first response with 10^3 and 10^5 stored objects (bench/restart.py)
    alarms    alarm lateness p99, 1,000 and 10,000 alarms due in one second
              (bench/alarm_lateness.py)
  dohost alone:
    store     objects created and stored at 10^3, 10^4, 10^5 (+10^6 with --full):
              time and disk per object, restart -> first response
    resident  10^3, 10^4, 4·10^4 resident objects: RSS per object, GET p50/p99
    micro     micro-benchmarks beside their physical floors
    ws        WebSocket broadcast to 1,000 members of a chat-room: messages/s, delivery
              p99, memory per idle connection (bench/ws_fanout.py; in the micro table)
  groups: side (the first eight), scale (store, resident), issue19 (every row of issue
  19: incr objects sql calls cold restart alarms resident), all

Options: --quick (short: 2 s loads, 1 repetition, 2,000 objects), --full (10 s loads,
3 repetitions, 10^6 stored objects), --durability os (dohost without fsync; rows are
labelled), --profile (py-spy on the dohost server during its loads; names the hot spots).

Writes bench/results/<date>-<commit>.md, .json and .png (a partial selection adds its
workload names to the file name) and prints the tables. Servers run on 127.0.0.1, pinned
to CPU 0 (load generators to CPU 1), and are stopped by process id.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import report, scale, sidebyside
from bench.common import (
    CLIENT_CPU,
    RESULTS,
    SERVER_CPU,
    WORK,
    BenchError,
    ensure_wrk,
    git_commit,
    machine,
    versions,
    write_json,
)
from bench.model import MicroRow, ResidentPoint, StorePoint, TargetRow

SIDE = ["noop", "read", "incr", "objects", "cold", "rss", "sql", "calls"]
TARGETED = ["restart", "alarms"]
SCALE = ["store", "resident"]
ALL = [*SIDE, *TARGETED, *SCALE, "micro", "ws"]
ISSUE19 = ["incr", "objects", "sql", "calls", "cold", "restart", "alarms", "resident"]
ALIASES = {"create": ["objects"], "rand": ["objects"], "side": SIDE, "scale": SCALE,
           "issue19": ISSUE19, "all": ALL}  # fmt: skip


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("workloads", nargs="*", metavar="workload", help="default: all")
    ap.add_argument("--quick", action="store_true", help="short loads, one repetition")
    ap.add_argument("--full", action="store_true", help="long loads, 10^6 stored objects")
    ap.add_argument("--durability", choices=["fsync", "os"], default="fsync")
    ap.add_argument("--duration", type=float, help="seconds per wrk load")
    ap.add_argument("--reps", type=int, help="interleaved repetitions per side-by-side row")
    ap.add_argument("--objects", type=int, help="N of the objects and rss rows (10,000)")
    ap.add_argument("--profile", action="store_true", help="py-spy the dohost server")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--live", action="store_true",
                    help="benchmark the working tree's host/ as it is (default: HEAD's)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.quick and args.full:
        ap.error("--quick and --full exclude each other")
    selected: list[str] = []
    for w in args.workloads or ["all"]:
        if w in ALIASES:
            selected += ALIASES[w]
        elif w in ALL:
            selected.append(w)
        else:
            ap.error(f"unknown workload {w!r}; known: {', '.join(ALL + list(ALIASES))}")
    args.selected = [w for w in ALL if w in selected]
    return args


class Progress:
    """rich progress bars (one per phase) and log lines; plain text when not a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.console = Console(stderr=True)
        self.bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self.t0 = time.perf_counter()

    def say(self, text: str) -> None:
        self.console.print(f"[{(time.perf_counter() - self.t0) / 60:5.1f} min] {text}")

    def task(self, label: str, total: int) -> Callable[[int], None]:
        tid = self.bar.add_task(label, total=total)

        def update(done: int) -> None:
            self.bar.update(tid, completed=done)
            if done >= total:
                self.bar.remove_task(tid)

        return update

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        with self.bar:
            yield


def settings(args: argparse.Namespace) -> dict[str, Any]:
    quick, full = args.quick, args.full
    s: dict[str, Any] = {
        "duration": 2.0 if quick else 10.0 if full else 5.0,
        "reps": 1 if quick else 3 if full else 2,
        "nobj": 2_000 if quick else 10_000,
        "rss_objects": 2_000 if quick else 10_000,
        "cold_reps": 3 if quick else 5,
        "store_sizes": [10**3, 10**4] if quick else [10**3, 10**4, 10**5],
        # 4·10^4: past issue 19's 32,768 (vm.max_map_count stopped it near 16,300)
        "resident_sizes": [10**3, 10**4] if quick else [10**3, 10**4, 4 * 10**4],
        "restart_sizes": [10**3, 10**4] if quick else [10**3, 10**5],
        "alarm_sizes": [10**3] if quick else [10**3, 10**4],
        # time caps: a slow disk (or peer) shortens a load instead of the run overrunning
        "create_cap_s": 20.0 if quick else 600.0 if full else 60.0,
        "store_cap_s": 60.0 if quick else 3600.0 if full else 120.0,
        "resident_cap_s": 60.0 if quick else 600.0 if full else 150.0,
    }
    if full:
        s["store_sizes"].append(10**6)
    if args.duration:
        s["duration"] = args.duration
    if args.reps:
        s["reps"] = args.reps
    if args.objects:
        s["nobj"] = s["rss_objects"] = args.objects
    return s


def _failed(check: str) -> bool:
    """A scale point's check failed: anything but "ok" and time-cap notes."""
    return any(not part.startswith("time cap") for part in check.split("; ") if part != "ok")


def residents_row(points: list[ResidentPoint]) -> TargetRow:
    """Issue 19's "residents per process": the most residents a point held with every
    check passed, beside the ceiling the host derives from vm.max_map_count."""
    held = max((p.residents for p in points if p.check == "ok" and p.residents >= 0), default=0)
    note = "the most resident objects a scale point held (all checks passed)"
    try:
        from dohost.runtime import engine

        note += (
            f"; the host's ceiling here: {engine.resident_ceiling():,} "
            f"(vm.max_map_count − a reserve, at {engine.MAPPINGS_PER_INSTANCE} memory "
            "mapping(s) per resident at worst)"
        )
    except (ImportError, AttributeError):
        pass
    return TargetRow("residents", "residents per process", held, "objects", 32_768,
                     at_most=False, note=note)  # fmt: skip


TREE_ENV = "DOHOST_BENCH_TREE"


def use_committed_tree(argv: list[str]) -> None:
    """Re-run this command against HEAD's host/ (extracted into bench/.work/tree/<commit>),
    so that the numbers belong to the commit they are filed under, whatever is being
    edited in the working tree meanwhile. The built guests (.wasm) come from the
    working tree. `--live` skips this."""
    if os.environ.get(TREE_ENV):
        return
    import io
    import subprocess
    import tarfile

    from bench.common import REPO

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    dest = WORK / "tree" / commit[:12]
    if not (dest / "host" / "dohost" / "__init__.py").exists():
        shutil.rmtree(dest, ignore_errors=True)
        tar = subprocess.run(["git", "archive", "--format=tar", commit, "host"], cwd=REPO,
                             capture_output=True, check=True).stdout  # fmt: skip
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            t.extractall(dest, filter="data")
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, TREE_ENV: str(dest),
           "PYTHONPATH": str(dest / "host") + (os.pathsep + path if path else "")}  # fmt: skip
    os.execve(sys.executable, [sys.executable, "-m", "bench", *argv], env)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if not args.live:
        use_committed_tree(argv)
    sel = args.selected
    s = settings(args)
    started = time.perf_counter()
    date = datetime.date.today().isoformat()
    commit = git_commit()
    stem = f"{date}-{commit}" + ("" if sel == ALL else "-" + "+".join(sel))
    work = WORK / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work / "wrk.log"
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    ui = Progress()
    rec: dict[str, Any] = {
        "date": date,
        "command": "python -m bench " + " ".join(argv),
        "code": "working tree (--live)" if args.live else "HEAD's host/ (committed tree)",
        "machine": machine(),
        "durability": args.durability,
        "server_cpu": SERVER_CPU,
        "client_cpu": CLIENT_CPU,
        "selected": sel,
        "settings": ", ".join(f"{k}={v}" for k, v in s.items()),
        "profiled": args.profile,
    }
    profiles: dict[str, dict[str, Any]] = {}
    prof_dir = work / "profiles"  # raw stacks stay in the git-ignored work folder
    shutil.rmtree(prof_dir, ignore_errors=True)
    ctx = sidebyside.Ctx(
        work=work, duration=s["duration"], reps=s["reps"], nobj=s["nobj"],
        cold_reps=s["cold_reps"], rss_objects=s["rss_objects"], durability=args.durability,
        create_cap_s=s["create_cap_s"],
        log=log, say=ui.say, task=ui.task, profile_dir=prof_dir if args.profile else None,
    )  # fmt: skip
    store: list[StorePoint] = []
    resident: list[ResidentPoint] = []
    micro_rows: list[MicroRow] = []
    targets: list[TargetRow] = []
    errors: list[str] = []
    rec["errors"] = errors
    try:
        ensure_wrk()
        vers = versions()
        if any(w in SIDE for w in sel):
            from bench.servers import ensure_workerd, workerd_version

            ensure_workerd()
            vers["workerd"] = workerd_version()
        rec["versions"] = vers
        ui.say(f"running {', '.join(sel)} ({rec['settings']}); dohost durability {args.durability}")
        with ui.live():
            side = {w for w in sel if w in SIDE and w != "calls"}
            phases: list[tuple[str, Callable[[], None]]] = []
            if side:
                phases.append(("side by side", lambda: sidebyside.run(ctx, side)))
            if "calls" in sel:

                def run_calls() -> None:
                    ui.say("side by side: object → object calls")
                    from bench import calls_side

                    ctx.rows.extend(calls_side.run(s["reps"], not args.full, ctx.dlabel()))

                phases.append(("calls", run_calls))
            if "restart" in sel:

                def run_restart() -> None:
                    from bench import restart

                    targets.extend(restart.run(ctx, s["restart_sizes"]))

                phases.append(("restart", run_restart))
            if "alarms" in sel:

                def run_alarms() -> None:
                    ui.say(f"alarm lateness ({', '.join(f'{n:,}' for n in s['alarm_sizes'])})")
                    from bench import alarm_lateness

                    targets.extend(
                        alarm_lateness.run(s["alarm_sizes"], args.durability, ctx.dlabel())
                    )

                phases.append(("alarms", run_alarms))
            if "store" in sel:
                phases.append(("store", lambda: store.extend(
                    scale.run_store(ctx, s["store_sizes"], s["store_cap_s"]))))  # fmt: skip
            if "resident" in sel:
                phases.append(("resident", lambda: resident.extend(
                    scale.run_resident(ctx, s["resident_sizes"], s["resident_cap_s"]))))  # fmt: skip
            if "micro" in sel:

                def run_micro() -> None:
                    ui.say("micro-benchmarks")
                    from bench import micro

                    micro_rows.extend(micro.run(args.quick, args.durability, work))

                phases.append(("micro", run_micro))
            if "ws" in sel:

                def run_ws() -> None:
                    ui.say("WebSocket fan-out")
                    from bench import ws_fanout

                    micro_rows.extend(ws_fanout.run(args.quick, args.durability, work))

                phases.append(("ws", run_ws))
            for name, phase in phases:
                try:
                    phase()
                except Exception as e:
                    # One phase failing (a server that does not start, say) leaves the
                    # others to run; the error is in the report.
                    ui.say(f"{name} FAILED: {type(e).__name__}: {e}")
                    errors.append(f"{name}: {type(e).__name__}: {e}")
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    if resident:
        targets.append(residents_row(resident))
    if args.profile and prof_dir.exists():
        from bench.profile import summarize

        for f in sorted(prof_dir.glob("*.txt")):
            profiles[f.stem] = summarize(f)
    rec["wall_s"] = time.perf_counter() - started
    rec["machine"]["load_avg_end"] = os.getloadavg()
    rec["noise"] = report.noise_summary(
        ctx.rows, rec["machine"]["load_avg_start"], rec["machine"]["load_avg_end"]
    )
    png = out_dir / f"{stem}.png"
    if not args.no_write and report.plot(png, ctx.rows, store, resident, targets):
        rec["plot"] = str(png.relative_to(out_dir.parent.parent) if png.is_absolute() else png)
    md = report.markdown(rec, ctx.rows, store, resident, micro_rows, profiles, targets)
    print(md)
    if not args.no_write:
        rec["side_by_side"] = [r.to_json() for r in ctx.rows]
        rec["scale_store"] = [p.to_json() for p in store]
        rec["scale_resident"] = [p.to_json() for p in resident]
        rec["micro"] = [m.to_json() for m in micro_rows]
        rec["targets"] = [t.to_json() for t in targets]
        rec["profiles"] = profiles
        write_json(out_dir / f"{stem}.json", rec)
        (out_dir / f"{stem}.md").write_text(md + "\n")
        print(f"\nwrote {out_dir / stem}.md, .json" + (", .png" if "plot" in rec else ""),
              file=sys.stderr)  # fmt: skip
    failed = [r.key for r in ctx.rows if r.checks] + errors
    failed += [f"store {p.n}" for p in store if _failed(p.check)]
    failed += [f"resident {p.n}" for p in resident if _failed(p.check)]
    failed += [t.key for t in targets if t.check != "ok"]
    if failed:
        print(f"bench: correctness checks FAILED: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0
