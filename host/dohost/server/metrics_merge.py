"""`/metrics` of a `--processes N` host: the nodes' own expositions added together.

Every series the nodes export is a counter, a histogram part or a gauge of something
each node holds a disjoint share of (its objects, its connections, its workers), so the
host's value is the sum over nodes of the series with the same name and labels. On top,
`dohost_node_up{node}` says which nodes answered (a node that did not is missing from
the sums: its counters seem to drop until it answers again).
"""

from __future__ import annotations

from prometheus_client.utils import floatToGoString

from dohost.server.node import NodeContext


class _Family:
    __slots__ = ("meta", "samples")

    def __init__(self) -> None:
        self.meta: list[str] = []
        self.samples: dict[str, float] = {}


def _add(families: dict[str, _Family], text: str) -> None:
    current: _Family | None = None
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                current = families.get(parts[2])
                if current is None:
                    current = families[parts[2]] = _Family()
                if line not in current.meta:
                    current.meta.append(line)
            continue
        series, _, value = line.rpartition(" ")
        if current is None:
            current = families.setdefault(series.partition("{")[0], _Family())
        try:
            number = float(value)
        except ValueError:
            continue
        current.samples[series] = current.samples.get(series, 0.0) + number


def merge_metrics(node: NodeContext, own: bytes, peers: list[tuple[int, bytes | None]]) -> bytes:
    families: dict[str, _Family] = {}
    _add(families, own.decode())
    up = [(node.index, True)]
    for index, body in peers:
        up.append((index, body is not None))
        if body is not None:
            _add(families, body.decode())
    out: list[str] = []
    for fam in families.values():
        out += fam.meta
        out += [f"{k} {floatToGoString(v)}" for k, v in fam.samples.items()]  # type: ignore[no-untyped-call]
    out.append("# HELP dohost_node_up Whether the node answered this scrape")
    out.append("# TYPE dohost_node_up gauge")
    for index, ok in sorted(up):
        out.append(f'dohost_node_up{{node="{index}"}} {1 if ok else 0}')
    return ("\n".join(out) + "\n").encode()
