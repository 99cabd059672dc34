"""Test helper process: increments one counter object forever through the embedded API,
printing each acknowledged value on its own line (flushed) so a test can SIGKILL it at
any moment and check that nothing acknowledged was lost.

usage: incr_forever.py DATA_DIR COUNTER_WASM STORAGE [OBJECTS]
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from dohost import Host, Request


async def main(data: str, wasm_path: str, storage: str, objects: int) -> None:
    async with Host(data) as host:
        await host.deploy("acme", "counter", Path(wasm_path).read_bytes(), storage)
        print("ready", flush=True)
        i = 0
        while True:
            name = f"obj{i % objects}"
            r = await host.fetch("acme", "counter", name, Request("POST", "/incr"))
            print(f"{name} {r.text}", flush=True)
            i += 1


if __name__ == "__main__":
    trio.run(
        main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 1
    )
