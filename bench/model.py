"""What the suite records: side-by-side rows, scale points and micro rows, as JSON-ready
dataclasses, with the ratio rule in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.common import median


@dataclass
class Side:
    """One server's samples of one row: one value per interleaved repetition."""

    values: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # server CPU time per request
    notes: list[str] = field(default_factory=list)

    @property
    def value(self) -> float:
        return median(self.values)

    @property
    def cpu(self) -> float:
        return median(self.cpu_us)

    @property
    def p50(self) -> float:
        return median(self.p50_ms)

    @property
    def p99(self) -> float:
        return median(self.p99_ms)


@dataclass
class Row:
    """A side-by-side row. `higher_is_better` says how the ratio is taken: the ratio is
    always "how many times better dohost is" (dohost/workerd for rates, workerd/dohost for
    times and memory), computed per repetition pair and reported as the median of those."""

    key: str
    workload: str
    conc: str
    unit: str
    higher_is_better: bool
    target: float  # the ratio the issue asks for
    dohost: Side = field(default_factory=Side)
    workerd: Side = field(default_factory=Side)
    checks: list[str] = field(default_factory=list)  # failures only; empty = all passed
    checked: list[str] = field(default_factory=list)  # what was checked
    note: str = ""

    def pair_ratios(self) -> list[float]:
        out = []
        for d, w in zip(self.dohost.values, self.workerd.values, strict=False):
            if d > 0 and w > 0:
                out.append(d / w if self.higher_is_better else w / d)
        return out

    @property
    def ratio(self) -> float:
        return median(self.pair_ratios())

    @property
    def meets_target(self) -> bool:
        r = self.ratio
        return r == r and r >= self.target

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["pair_ratios"] = self.pair_ratios()
        d["meets_target"] = self.meets_target
        for side in ("dohost", "workerd"):
            s: Side = getattr(self, side)
            d[side]["value"] = s.value
            d[side]["p50"] = s.p50
            d[side]["p99"] = s.p99
            d[side]["cpu"] = s.cpu
        return d


@dataclass
class StorePoint:
    """Scale curve: n objects created and stored by one dohost."""

    n: int
    secs: float
    errors: int
    disk_bytes: int
    restart_first_s: float  # spawn -> first 200 from an existing object
    restart_listen_s: float
    check: str
    restart_rss_kib: int = 0  # the server's RSS after the restart and one request

    @property
    def us_per_object(self) -> float:
        return self.secs / self.n * 1e6

    @property
    def disk_per_object(self) -> float:
        return self.disk_bytes / self.n

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["us_per_object"] = self.us_per_object
        d["disk_per_object"] = self.disk_per_object
        return d


@dataclass
class ResidentPoint:
    n: int
    residents: int
    rss_growth_kib: int
    p50_ms: float
    p99_ms: float
    rps: float
    check: str

    @property
    def kib_per_object(self) -> float:
        return self.rss_growth_kib / max(self.residents, 1)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["kib_per_object"] = self.kib_per_object
        return d


@dataclass
class MicroRow:
    name: str
    value: float
    unit: str
    floor_name: str = ""
    floor_value: float = float("nan")
    note: str = ""

    @property
    def over_floor(self) -> float:
        if self.floor_value and self.floor_value == self.floor_value:
            return self.value / self.floor_value
        return float("nan")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["over_floor"] = self.over_floor
        return d


@dataclass
class TargetRow:
    """A row of the issue's table measured against an absolute target (no workerd
    counterpart, or a dohost-only measure): `value` in `unit`, met when it is on the
    right side of `target` (`at_most`: lower is better)."""

    key: str
    name: str
    value: float
    unit: str
    target: float
    at_most: bool
    note: str = ""
    check: str = "ok"

    @property
    def meets_target(self) -> bool:
        v = self.value
        return v == v and (v <= self.target if self.at_most else v >= self.target)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["meets_target"] = self.meets_target
        return d
