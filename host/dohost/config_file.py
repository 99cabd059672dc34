"""`dohost serve --config FILE`: every `serve` flag from a TOML file.

    # dohost.toml
    data = "/var/lib/dohost"
    host = "0.0.0.0"
    port = 8080
    durability = "fsync"
    max-body-bytes = 33554432      # or max_body_bytes
    [quota]                        # the repeatable --quota KEY=VALUE, as a table
    objects = 100000
    requests_per_s = 500

A key is a flag's long name without the dashes (`-` or `_` inside it); its value is what
the flag takes, checked by the flag's own type. Flags given on the command line win
over the file. The keys come from the command's options themselves, so a flag added to
`serve` is a config key with no change here. An unknown key or a bad value is one line
naming the key (`invalid_config`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dohost.core.errors import Code, DohostError

FC = TypeVar("FC", bound=Callable[..., Any])
# Options that make no sense inside the file (`-v`, which every command takes, is how
# much this run logs).
NOT_IN_FILE = {"config", "help", "verbose"}


def _options(command: click.Command) -> dict[str, click.Option]:
    out: dict[str, click.Option] = {}
    for p in command.params:
        if not isinstance(p, click.Option) or p.name is None or p.name in NOT_IN_FILE:
            continue
        longs = [o for o in p.opts if o.startswith("--")]
        if longs:
            out[longs[0][2:]] = p
    return out


def _bad(path: Path, key: str, why: str) -> DohostError:
    return DohostError(Code.INVALID_CONFIG, f"{path}: key {key!r}: {why}")


def _value(path: Path, key: str, opt: click.Option, raw: Any, ctx: click.Context) -> Any:
    if opt.multiple:
        # --quota KEY=VALUE...: a table, or a list of "KEY=VALUE" strings.
        if isinstance(raw, dict):
            items = [f"{k}={v}" for k, v in raw.items()]
        elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            items = list(raw)
        else:
            raise _bad(path, key, "must be a table (or a list of KEY=VALUE strings)")
        return [_value(path, key, _single(opt), i, ctx) for i in items]
    if isinstance(raw, dict | list) or (isinstance(raw, bool) and not opt.is_flag):
        raise _bad(path, key, f"must be a single {opt.type.name} value")
    if opt.is_flag and not isinstance(raw, bool):
        raise _bad(path, key, "must be true or false")
    try:
        return opt.type.convert(raw, opt, ctx)
    except click.BadParameter as e:
        raise _bad(path, key, e.message) from None


def _single(opt: click.Option) -> click.Option:
    return click.Option(opt.opts, type=opt.type)


Checks = dict[str, Callable[[Any], object]]


def load(
    path: Path, command: click.Command, ctx: click.Context, checks: Checks | None = None
) -> dict[str, Any]:
    """The `default_map` (parameter name -> value) a TOML file gives `command`.
    `checks`: per parameter name, a further check of each value (raises DohostError)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DohostError(Code.INVALID_CONFIG, f"{path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise DohostError(Code.INVALID_CONFIG, f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise DohostError(Code.INVALID_CONFIG, f"{path}: not valid TOML: {e}") from None
    options = _options(command)
    out: dict[str, Any] = {}
    for key, raw in data.items():
        opt = options.get(key.replace("_", "-"))
        if opt is None:
            known = ", ".join(sorted(options))
            raise _bad(path, key, f"not a serve setting (known: {known})")
        assert opt.name is not None
        value = _value(path, key, opt, raw, ctx)
        check = (checks or {}).get(opt.name)
        if check is not None:
            for v in value if opt.multiple else [value]:
                try:
                    check(v)
                except DohostError as e:
                    raise _bad(path, key, e.message) from None
        out[opt.name] = value
    return out


def option(command_name: str, checks: Checks | None = None) -> Callable[[FC], FC]:
    """The `--config FILE` option: eager, so the file's values become the defaults that
    the other flags (given on the command line) override."""

    def callback(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
        if value is None:
            return
        assert ctx.command is not None
        ctx.default_map = {**(ctx.default_map or {}), **load(value, ctx.command, ctx, checks)}

    return click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        is_eager=True,
        expose_value=False,
        callback=callback,
        help=f"A TOML file with any of the {command_name} flags (flags given here win).",
    )
