"""The entry point of one node of `dohost serve --processes N` (started by
server/parent.py): `python -m dohost.server.node_main ROLE_JSON CONFIG_JSON`."""

from __future__ import annotations

import logging
import sys

import trio

from dohost.server.node import NodeRole
from dohost.server.parent import config_from_json
from dohost.server.serve import serve


def main() -> None:
    role = NodeRole.from_json(sys.argv[1])
    config = config_from_json(sys.argv[2], role)
    logging.basicConfig(
        level=logging.WARNING,
        format=f"node {role.index} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    trio.run(serve, config)


if __name__ == "__main__":
    main()
