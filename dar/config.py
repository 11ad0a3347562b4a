"""Typed job configs: dataclass -> argparse flags, JSON files, presets, validation.

One-way flow (EDM2 style): preset -> config file -> command-line flags ->
validated dataclass -> job. Every field carries its help text in
`field(metadata={"help": ...})`; unknown keys in a file and unknown flags are
errors; the resolved config is saved with every run and printed by --dry-run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def opt(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with help text (and a default, possibly a list)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


class ConfigError(ValueError):
    """A configuration mistake; the message names the key and the fix."""


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) for X | None annotations."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _coerce(name: str, value: Any, tp: Any) -> Any:
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {name!r} must not be null")
    if isinstance(value, str) and optional and value.lower() in ("none", "null"):
        return None
    origin = typing.get_origin(base)
    try:
        if origin in (list, tuple):
            (item,) = typing.get_args(base)[:1]
            if isinstance(value, str):
                value = [v for v in value.split(",") if v != ""]
            return [_coerce(name, v, item) for v in value]
        if base is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return base(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {name!r}: cannot read {value!r} as {getattr(base, '__name__', base)}") from None


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build a dataclass from a dict; unknown keys are errors naming the valid ones."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One --flag per field (underscores become dashes), help with the visible default."""
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=argparse.SUPPRESS,
            metavar=f.name.upper(),
            help=f"{f.metadata.get('help', '')} (default: {default!r})",
        )


def job_parser(
    prog: str, doc: str | None, cls: type, presets: dict[str, dict[str, Any]] | None = None
) -> argparse.ArgumentParser:
    """The parser every job CLI shares: [--preset], --config FILE, --dry-run, and one flag per config field."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if presets:
        p.add_argument("--preset", choices=sorted(presets), help="named starting point (default: none, the field defaults)")
    p.add_argument("--config", help=f"JSON file of {cls.__name__} keys; flags override it")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    add_arguments(p, cls)
    return p


def run_job(cls: type[T], args: argparse.Namespace, job: Callable[[T], R], print_result: Callable[[T, R], None]) -> int:
    """A job's main(): resolve -> validate (if cls has it) -> print the config (--dry-run) or print_result(cfg, job(cfg)).

    Returns 0, or 2 with an `error: ...` line on stderr for bad input found while resolving or running.
    """
    try:
        cfg = resolve(cls, args)
        if hasattr(cfg, "validate"):
            cfg.validate()
        if args.dry_run:
            print(json.dumps(to_dict(cfg), indent=2))
            return 0
        result = job(cfg)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_result(cfg, result)
    return 0


def resolve(
    cls: type[T],
    args: argparse.Namespace,
    presets: dict[str, dict[str, Any]] | None = None,
) -> T:
    """preset (args.preset) -> JSON file (args.config) -> flags -> dataclass."""
    data: dict[str, Any] = {}
    preset = getattr(args, "preset", None)
    if preset:
        if not presets or preset not in presets:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(presets or {})}")
        data.update(presets[preset])
    config_file = getattr(args, "config", None)
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data.update(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    names = {f.name for f in dataclasses.fields(cls)}
    data.update({k: v for k, v in vars(args).items() if k in names})
    return from_dict(cls, data, where=str(config_file or "config"))
