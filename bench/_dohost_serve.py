"""`dohost serve` with Host settings the CLI does not expose (used by the bench suite).

    python bench/_dohost_serve.py [--idle-timeout S] [--max-resident N] -- serve ARGS...

The resident-object rows need objects to stay resident while they are created and
measured (the default hibernates an object after 10 s idle, and keeps at most 10,000),
like workerd's `preventEviction` namespace. Everything else is `dohost serve` unchanged.
"""

from __future__ import annotations

import argparse
import functools
import sys


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle-timeout", type=float, default=None)
    ap.add_argument("--max-resident", type=int, default=None)
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    import dohost.server.serve as serve_mod
    from dohost.cli import main as cli_main
    from dohost.server.host import Host

    kw: dict[str, float | int] = {}
    if args.idle_timeout is not None:
        kw["idle_timeout"] = args.idle_timeout
    if args.max_resident is not None:
        kw["max_resident"] = args.max_resident
    serve_mod.Host = functools.partial(Host, **kw)  # type: ignore[assignment,attr-defined,arg-type]
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    sys.argv = ["dohost", *rest]
    cli_main()


if __name__ == "__main__":
    main()
