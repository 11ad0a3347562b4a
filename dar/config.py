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
import math
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dar.errors import HarnessError

T = TypeVar("T")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field: lo (<= or <) value (<= or <) hi; None = unbounded on that side."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def text(self, name: str) -> str:
        lo = "" if self.lo is None else f"{self.lo:g} {'<' if self.lo_open else '<='} "
        hi = "" if self.hi is None else f" {'<' if self.hi_open else '<='} {self.hi:g}"
        return f"{lo}{name}{hi}" if (lo or hi) else f"finite {name}"


POSITIVE = Range(0, lo_open=True)  # > 0
NON_NEGATIVE = Range(0)  # >= 0
AT_LEAST_1 = Range(1)  # >= 1
FRACTION = Range(0, 1, hi_open=True)  # [0, 1)


def opt(
    default: Any, help: str, identity: bool = True, *, range: Range | None = None, choices: tuple | None = None, **kw: Any
) -> Any:
    """A dataclass field with help text (and a default, possibly a list).

    identity: whether the field is part of the identity of what the job produces (dar/fingerprint.py):
    True for settings that change the numbers, False for paths, intervals, devices and work splits.
    range / choices: the allowed values, checked whenever a config is resolved (check_values): every float
    must be finite, a number must lie in its range (each item, for a list), a string must be one of its choices.
    """
    meta = {"help": help, "identity": identity, "range": range, "choices": choices, **kw}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def identity_fields(cfg: Any) -> dict[str, Any]:
    """The fields of a config dataclass that are part of its result's identity (opt(..., identity=True))."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.metadata.get("identity", True)}


class ConfigError(HarnessError, ValueError):
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
        if base in (int, float) and isinstance(value, bool):  # YAML/JSON true is not the number 1
            raise ValueError(value)
        return base(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {name!r}: cannot read {value!r} as {getattr(base, '__name__', base)}") from None


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build a dataclass from a dict; unknown keys are errors naming the valid ones; values are range-checked."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    try:
        cfg = cls(**{k: _coerce(k, v, hints[k]) for k, v in data.items()})
        check_values(cfg)
    except ConfigError as e:
        if where in ("config", "") or str(e).startswith(where):
            raise
        raise ConfigError(f"{where}: {e}") from None
    return cfg


def check_values(cfg: Any) -> None:
    """Every field of a config against its declared range or choices (opt(..., range=, choices=)); floats finite.

    The one place values are checked: the message names the key, the value and what is allowed."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for i, v in items:
            key = f.name if i is None else f"{f.name}[{i}]"
            rng, choices = f.metadata.get("range"), f.metadata.get("choices")
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key}: {v!r} is not a finite number" + (f"; allowed: {rng.text(f.name)}" if rng else ""))
            if rng is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and v not in rng:
                raise ConfigError(f"{key}: {v!r} is out of range; allowed: {rng.text(f.name)}")
            if choices is not None and v is not None and v not in choices:
                raise ConfigError(f"{key}: {v!r} is not one of {', '.join(map(str, choices))}")
            if f.metadata.get("device") and v is not None:
                check_device(key, v)


def check_device(key: str, value: str) -> None:
    """auto | cpu | cuda | cuda:<index>; the common slip 'gpu' gets the right spelling in the message."""
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return
    hint = " (PyTorch calls GPUs 'cuda')" if value.lower() in ("gpu", "gpus", "nvidia") else ""
    raise ConfigError(f"{key}: {value!r} is not a device{hint}; use auto, cpu, cuda or cuda:<index>")


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


def job_parser(prog: str, doc: str | None, cls: type) -> argparse.ArgumentParser:
    """The parser every job CLI shares: --config FILE, --dry-run, and one flag per config field."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help=f"JSON file of {cls.__name__} keys (the workflow writes one per job); flags override it")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    add_arguments(p, cls)
    return p


def debug_mode() -> bool:
    """--debug on `python -m dar` (or DAR_DEBUG=1 in the environment): show tracebacks instead of `error:` lines."""
    return os.environ.get("DAR_DEBUG", "") not in ("", "0")


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
    except (HarnessError, FileNotFoundError, ValueError) as e:
        if debug_mode():
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_result(cfg, result)
    return 0


def given(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The settings given to a job: its JSON file (args.config), then the flags on top, as raw values."""
    data: dict[str, Any] = {}
    config_file = getattr(args, "config", None)
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} does not hold a JSON object of {cls.__name__} keys")
        data.update(loaded)
    names = {f.name for f in dataclasses.fields(cls)}
    data.update({k: v for k, v in vars(args).items() if k in names})
    return data


def resolve(cls: type[T], args: argparse.Namespace) -> T:
    """JSON file (args.config) -> flags -> dataclass."""
    return from_dict(cls, given(cls, args), where=str(getattr(args, "config", None) or "config"))


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """argparse with `--config FILE` for the commands whose flags are plain argparse: the file's keys (the
    parser's dests) become the defaults as typed JSON values, and flags given on the command line override them.
    An unknown key in the file is an error naming the valid ones."""
    parser.add_argument("--config", help="JSON file of this command's settings (keys: the flags' names); flags override it")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        path = Path(known.config)
        if not path.is_file():
            parser.error(f"config file {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            parser.error(f"config file {path} is not valid JSON: {e}")
        actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
        unknown = sorted(set(data) - set(actions))
        if unknown:
            parser.error(f"config file {path}: unknown key(s) {unknown}; valid keys: {sorted(actions)}")
        for key in data:
            actions[key].required = False  # given by the file
        parser.set_defaults(**data)
    return parser.parse_args(argv)
