"""Test helper process: sets an alarm whose handler takes a while, and says "firing" (on
stdout, flushed) when the host starts delivering it, so a test can SIGKILL the process
while the handler runs.

usage: alarm_crash.py DATA_DIR KVTEST_WASM BUSY_MS
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import trio

from dohost import Host, Request


async def main(data: str, wasm_path: str, busy_ms: str) -> None:
    async with Host(data) as host:
        await host.deploy("acme", "k", Path(wasm_path).read_bytes())
        deliver = host.alarms._deliver

        async def announced(entry, run, kind):  # type: ignore[no-untyped-def]
            print("firing", flush=True)
            return await deliver(entry, run, kind)

        host.alarms._deliver = announced  # type: ignore[method-assign]
        await host.fetch(
            "acme", "k", "a", Request("POST", "/put", "key=__alarm_busy_ms", [], busy_ms.encode())
        )
        now = int(time.time() * 1000)
        await host.fetch("acme", "k", "a", Request("POST", "/alarm_set", f"ms={now}"))
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])
