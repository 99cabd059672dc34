"""Tables (Markdown), the JSON record and the plot of one suite run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.model import MicroRow, ResidentPoint, Row, StorePoint, TargetRow

# Issue 19's table, in its order: side-by-side row keys (ratio targets) and absolute rows.
ISSUE_ROWS = [
    "incr-c32", "incr-c1", "create", "rand-c32", "sql-insert-c1", "calls", "cold",
    "residents", "alarms-1000", "alarms-10000", "restart-1000", "restart-100000",
]  # fmt: skip


def _num(x: float, digits: int = 0) -> str:
    if x != x:  # nan
        return "–"
    if digits == 0 and abs(x) < 10:
        digits = 2 if abs(x) < 1 else 1
    return f"{x:,.{digits}f}"


def _lat(side: Any) -> str:
    if side.p50 != side.p50:
        return ""
    return f"{_num(side.p50)} / {_num(side.p99)}"


def _cpu(r: Row) -> str:
    if r.dohost.cpu != r.dohost.cpu:
        return ""
    return f"{_num(r.workerd.cpu)} / {_num(r.dohost.cpu)}"


def side_table(rows: list[Row]) -> str:
    out = [
        "| workload | load | unit | workerd | dohost | workerd p50 / p99 ms "
        "| dohost p50 / p99 ms | server CPU µs/req workerd / dohost "
        "| dohost advantage (×) | per pair | target | check |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in rows:
        pairs = ", ".join(f"{x:.2f}" for x in r.pair_ratios())
        mark = "" if r.meets_target else " ✗"
        check = "ok" if not r.checks else "FAIL: " + "; ".join(r.checks)
        out.append(
            f"| {r.workload} | {r.conc} | {r.unit} | {_num(r.workerd.value)} "
            f"| {_num(r.dohost.value)} | {_lat(r.workerd)} | {_lat(r.dohost)} | {_cpu(r)} "
            f"| **{_num(r.ratio, 2)}**{mark} | {pairs} | {f'≥ {r.target:g}' if r.target else '–'} "
            f"| {check} |"
        )
    return "\n".join(out)


def _value(x: float, unit: str) -> str:
    return f"{_num(x)} {unit}" if x == x else "–"


def issue_table(rows: list[Row], targets: list[TargetRow]) -> str:
    """Every row of issue 19 measured in this run: ratio against workerd where workerd
    has the row, the absolute value where it has not, with the target and ✓/✗."""
    by_key: dict[str, Row | TargetRow] = {r.key: r for r in rows}
    by_key.update({t.key: t for t in targets})
    out = [
        "| row | dohost | workerd | dohost advantage (×) | server CPU µs/req workerd / dohost "
        "| target | met |",
        "|---|--:|--:|--:|--:|--:|:-:|",
    ]
    for key in ISSUE_ROWS:
        r = by_key.get(key)
        if r is None:
            continue
        if isinstance(r, Row):
            name = f"{r.workload} {r.conc}".strip()
            out.append(
                f"| {name} | {_value(r.dohost.value, r.unit)} | {_value(r.workerd.value, r.unit)} "
                f"| **{_num(r.ratio, 2)}** | {_cpu(r)} | ≥ {r.target:g}× "
                f"| {'✓' if r.meets_target else '✗'} |"
            )
        else:
            out.append(f"| {r.name} | {_value(r.value, r.unit)} | – | – | | {_goal(r)} |")
    return "\n".join(out)


def _goal(t: TargetRow) -> str:
    """The target and whether it is met: two cells."""
    sign = "≤" if t.at_most else "≥"
    return f"{sign} {t.target:,g} {t.unit} | {'✓' if t.meets_target else '✗'}"


def target_table(targets: list[TargetRow]) -> str:
    out = ["| measure | dohost | target | met | note | check |", "|---|--:|--:|:-:|---|---|"]
    for t in targets:
        out.append(f"| {t.name} | {_value(t.value, t.unit)} | {_goal(t)} | {t.note} | {t.check} |")
    return "\n".join(out)


def store_table(points: list[StorePoint]) -> str:
    out = [
        "| stored objects | time per object µs | objects/s | disk bytes per object "
        "| restart → first response ms | restart → listening ms | RSS after restart MiB | check |",
        "|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for p in points:
        out.append(
            f"| {p.n:,} | {_num(p.us_per_object)} | {_num(p.n / p.secs)} "
            f"| {_num(p.disk_per_object)} | {_num(p.restart_first_s * 1e3)} "
            f"| {_num(p.restart_listen_s * 1e3)} | {_num(p.restart_rss_kib / 1024)} | {p.check} |"
        )
    return "\n".join(out)


def resident_table(points: list[ResidentPoint]) -> str:
    out = [
        "| resident objects | RSS per object KiB | GET p50 ms | GET p99 ms | GET req/s (c=1) | check |",
        "|--:|--:|--:|--:|--:|---|",
    ]
    for p in points:
        if p.residents < 0:
            out.append(f"| {p.n:,} | – | – | – | – | {p.check} |")
            continue
        out.append(
            f"| {p.n:,} | {_num(p.kib_per_object)} | {_num(p.p50_ms, 3)} | {_num(p.p99_ms, 3)} "
            f"| {_num(p.rps)} | {p.check} |"
        )
    return "\n".join(out)


def micro_table(rows: list[MicroRow]) -> str:
    out = [
        "| measure | value | floor | floor value | × floor | note |",
        "|---|--:|---|--:|--:|---|",
    ]
    for m in rows:
        out.append(
            f"| {m.name} | {_num(m.value, 2 if m.value < 100 else 0)} {m.unit} | {m.floor_name} "
            f"| {_num(m.floor_value, 2 if m.floor_value < 100 else 0)} {m.unit} "
            f"| {_num(m.over_floor, 1)} | {m.note} |"
        )
    return "\n".join(out)


def noise_summary(
    rows: list[Row], load_start: tuple[float, ...], load_end: tuple[float, ...]
) -> str:
    spreads = []
    for r in rows:
        pr = r.pair_ratios()
        if len(pr) >= 2 and min(pr) > 0:
            spreads.append((max(pr) / min(pr), r.key))
    text = (
        f"Load average (1/5/15 min): {', '.join(f'{x:.1f}' for x in load_start)} at start, "
        f"{', '.join(f'{x:.1f}' for x in load_end)} at end."
    )
    if spreads:
        spreads.sort()
        worst = spreads[-1]
        med = spreads[len(spreads) // 2][0]
        text += (
            f" Spread of the per-pair ratios (max/min over repetitions): median {med:.2f}×, "
            f"worst {worst[0]:.2f}× ({worst[1]})."
        )
    return text


def markdown(rec: dict[str, Any], rows: list[Row], store: list[StorePoint],
             resident: list[ResidentPoint], micro: list[MicroRow],
             profiles: dict[str, dict[str, Any]],
             targets: list[TargetRow] | None = None) -> str:  # fmt: skip
    targets = targets or []
    m, v = rec["machine"], rec["versions"]
    lines = [
        f"# dohost benchmarks, {rec['date']} ({v['dohost']})",
        "",
        f"Command: `{rec['command']}`  ",
        f"Machine: {m['cores']} cores, {m['cpu_model']}, {m['mem_gib']} GiB, Linux {m['kernel']}; "
        f"servers pinned to CPU {rec['server_cpu']}, load generators to CPU {rec['client_cpu']}  ",
        f"Versions: dohost {v['dohost']}, Python {v['python']}, wasmtime {v['wasmtime']}, "
        f"apsw {v['apsw']}, trio {v['trio']}, workerd {v.get('workerd', '–')}, wrk {v['wrk']}  ",
        f"Durability: dohost `{rec['durability']}`"
        + (
            " (fsync per group commit)"
            if rec["durability"] == "fsync"
            else " (NO fsync: rows labelled)"
        )
        + "; workerd: fsync per commit (always)  ",
        f"Code: {rec['code']}  ",
        f"Settings: {rec['settings']}  ",
        f"Wall time: {rec['wall_s'] / 60:.1f} min",
        "",
    ]
    if rec.get("errors"):
        lines += ["**Errors**: " + "; ".join(rec["errors"]), ""]
    if rec.get("profiled"):
        lines += ["**Profiled run**: py-spy sampled the dohost server during its loads; its "
                  "numbers are perturbed by the sampling.", ""]  # fmt: skip
    if any(r.key in ISSUE_ROWS for r in [*rows, *targets]):
        lines += [
            "## Issue 19: every row, per core (`--processes 1`)",
            "",
            "Side-by-side rows: the median of the interleaved pairs' ratios (below); rows "
            "without a workerd counterpart: the absolute value against the absolute target.",
            "",
            issue_table(rows, targets),
            "",
        ]
    if rows:
        lines += [
            "## dohost vs workerd (interleaved A/B)",
            "",
            "Values are medians over repetitions; *dohost advantage* is how many times "
            "better dohost is (dohost/workerd for rates, workerd/dohost for times and "
            "memory), the median of the per-repetition pair ratios; ✗ marks a row below "
            "its target.",
            "",
            side_table(rows),
            "",
            rec.get("noise", ""),
            "",
        ]
        notes = [f"- {r.key}: {r.note}" for r in rows if r.note]
        checked = [f"- {r.key}: " + "; ".join(r.checked) for r in rows if r.checked]
        fsyncs = [f"- {r.key}: " + ", ".join(r.dohost.notes) for r in rows if r.dohost.notes]
        if fsyncs:
            notes += ["", "dohost requests per fsync (group commit), per repetition:", "", *fsyncs]
        if notes:
            lines += ["Notes:", "", *notes, ""]
        if checked:
            lines += ["Correctness checks:", "", *checked, ""]
    if targets:
        lines += ["## Rows with absolute targets (dohost)", "", target_table(targets), ""]
    if store:
        lines += ["## Scale: objects created and stored (dohost)", "", store_table(store), ""]
    if resident:
        lines += ["## Scale: resident objects (dohost)", "", resident_table(resident), ""]
    if micro:
        lines += ["## Micro-benchmarks beside their floors (dohost, in-process)", "",
                  micro_table(micro), ""]  # fmt: skip
    if profiles:
        lines += ["## Profiles (py-spy, dohost server)", "", _PROFILE_HELP, ""]
        for key, prof in profiles.items():
            lines += profile_lines(key, prof)
    if rec.get("plot"):
        lines += [f"![plot]({Path(rec['plot']).name})", ""]
    return "\n".join(lines)


_PROFILE_HELP = (
    "Busy: a thread class's non-waiting samples over the load's wall time (1.0 = one "
    "thread busy throughout; the server is pinned to one core, so the classes share it). "
    "Functions: share of that class's busy samples, self (the leaf) / inclusive (anywhere "
    "on the stack)."
)


def profile_lines(key: str, prof: dict[str, Any]) -> list[str]:
    if not prof:
        return []
    if "busy" in prof:
        head = ", ".join(f"{c} {v:.0%}" for c, v in prof["busy"].items())
        out = [f"**{key}** ({prof['secs']:.0f} s at {prof['rate']:.0f} Hz) — busy: {head}", ""]
    else:
        head = ", ".join(f"{c} {v:.0%}" for c, v in prof.get("share", {}).items())
        out = [f"**{key}** (whole process run) — share of samples: {head}", ""]
    for cls in ("loop", "committer"):
        if prof.get(cls):
            out.append(f"- {cls} thread{'s' if cls == 'committer' else ''}:")
            out += [f"  - `{nm}` {a:.1%} / {b:.1%}" for nm, a, b in prof[cls]]
    return [*out, ""]


def plot(path: Path, rows: list[Row], store: list[StorePoint],
         resident: list[ResidentPoint], targets: list[TargetRow] | None = None) -> bool:  # fmt: skip
    targets = targets or []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing (pip install -e '.[dev]'): no plot")
        return False
    panels = [p for p in ("side", "targets", "store", "restart", "resident") if
              (p == "side" and rows) or (p in ("store", "restart") and store) or
              (p == "resident" and resident) or (p == "targets" and targets)]  # fmt: skip
    if not panels:
        return False
    ncols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 4.6 * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels) :]:
        ax.axis("off")
    for ax, panel in zip(flat, panels, strict=False):
        if panel == "side":
            labels = [f"{r.workload} {r.conc}".strip() for r in rows]
            ratios = [r.ratio for r in rows]
            colors = ["tab:gray" if not r.target else "tab:green" if r.meets_target else "tab:red"
                      for r in rows]  # fmt: skip
            y = range(len(rows))
            ax.barh(list(y), ratios, color=colors)
            ax.scatter([r.target or float("nan") for r in rows], list(y), marker="|", s=200,
                       color="black", label="target", zorder=3)  # fmt: skip
            ax.axvline(1.0, color="grey", lw=0.8)
            ax.set_xscale("log")
            ax.set_yticks(list(y), labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_xlabel("dohost advantage over workerd (×, log)")
            ax.set_title("dohost vs workerd per workload")
            ax.legend(fontsize=7)
        elif panel == "targets":
            # how far each absolute row is from its target: > 1 met (log scale)
            labels = [t.name for t in targets]
            margin = [(t.target / t.value if t.at_most else t.value / t.target)
                      if t.value == t.value and t.value > 0 else float("nan")
                      for t in targets]  # fmt: skip
            y = list(range(len(targets)))
            ax.barh(y, margin, color=["tab:green" if t.meets_target else "tab:red"
                                      for t in targets])  # fmt: skip
            ax.axvline(1.0, color="black", lw=0.8)
            ax.set_xscale("log")
            ax.set_yticks(y, labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_xlabel("target / value (× better than the target; ≥ 1 met, log)")
            ax.set_title("issue 19: rows with absolute targets")
        elif panel == "store":
            ns = [p.n for p in store]
            ax.plot(ns, [p.us_per_object for p in store], "o-", label="time per object (µs)")
            ax.plot(ns, [p.disk_per_object for p in store], "s-", label="disk bytes per object")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("objects stored")
            ax.set_title("creating and storing n objects")
            ax.legend(fontsize=7)
        elif panel == "restart":
            ns = [p.n for p in store]
            ax.plot(ns, [p.restart_first_s * 1e3 for p in store], "o-",
                    label="spawn → first response")  # fmt: skip
            ax.plot(ns, [p.restart_listen_s * 1e3 for p in store], "s--", label="spawn → listening")
            ax.set_xscale("log")
            ax.set_ylim(bottom=0)
            ax.set_xlabel("objects stored")
            ax.set_ylabel("ms")
            ax.set_title("restart with n stored objects")
            ax.legend(fontsize=7)
        else:
            for p in resident:
                if p.residents < 0:
                    ax.annotate(f"failed at {p.n:,}", (p.n, 0), xytext=(p.n, 2), fontsize=7,
                                color="tab:red", ha="center")  # fmt: skip
            resident = [p for p in resident if p.residents >= 0]
            ns = [p.n for p in resident]
            ax.plot(ns, [p.kib_per_object for p in resident], "o-", label="RSS per object (KiB)")
            ax.plot(ns, [p.p99_ms for p in resident], "s-", label="GET p99 (ms), c=1")
            ax.set_xscale("log")
            ax.set_ylim(bottom=0)
            ax.set_xlabel("resident objects")
            ax.set_title("n resident objects")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
