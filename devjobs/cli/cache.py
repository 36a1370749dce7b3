"""`devjobs cache info|prune`: the size of the fetched-sources cache, and pruning it now.

Fetches prune the cache by themselves (see `devjobs.resolver.cache`); `prune` is for
freeing space at once or with tighter limits than the environment's, `info` for seeing
what is kept. Neither ever removes what another process is using.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from devjobs.cli.numbers import whole_number
from devjobs.resolver.cache import Policy, RemoteInfo, default_cache_dir, info, prune, warn


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="show or prune the cache of fetched sources",
        description="The cache of fetched sources ($DEVJOBS_CACHE_DIR, else "
        "$XDG_CACHE_HOME/devjobs, else ~/.cache/devjobs). Fetches prune it by themselves: "
        "at most DEVJOBS_CACHE_MAX_TREES (20) checkouts per remote, remotes unused for "
        "DEVJOBS_CACHE_MAX_AGE_DAYS (30) removed, and DEVJOBS_CACHE_MAX_SIZE_MB (no "
        "budget) in all. Checkouts used in the last 10 minutes or in use by a running "
        "devjobs are never removed.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="remotes, checkouts and sizes")
    info.add_argument("-o", "--output", choices=["table", "json"], default="table")
    prune = actions.add_parser(
        "prune", help="apply the limits now (options override the environment's)"
    )
    prune.add_argument(
        "--max-trees", type=whole_number(0), metavar="N", help="checkouts kept per remote (0: all)"
    )
    prune.add_argument(
        "--max-age-days",
        type=_non_negative,
        metavar="DAYS",
        help="remove remotes and checkouts unused this long (0: never)",
    )
    prune.add_argument(
        "--max-size-mb", type=_non_negative, metavar="MB", help="total size budget (0: none)"
    )
    for sub in (info, prune):
        sub.add_argument("--cache-dir", type=Path, metavar="DIR", help="default: as for plan")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cache_dir: Path = args.cache_dir or default_cache_dir()
    if args.action == "prune":
        return _prune(args, cache_dir)
    return _info(cache_dir, args.output)


def _prune(args: argparse.Namespace, cache_dir: Path) -> int:
    policy = Policy.from_env()
    if args.max_trees is not None:
        policy = replace(policy, max_trees=args.max_trees)
    if args.max_age_days is not None:
        policy = replace(policy, max_age_days=args.max_age_days)
    if args.max_size_mb is not None:
        policy = replace(policy, max_bytes=int(args.max_size_mb * 1024 * 1024) or None)
    before = _total(info(cache_dir))
    pruned = prune(cache_dir, policy, wait=True)
    after = _total(info(cache_dir))
    sys.stdout.write(
        f"removed {_count(pruned.checkouts, 'checkout')}, {_count(pruned.remotes, 'remote')} "
        f"and {_count(pruned.repositories, 'repository', 'repositories')}: "
        f"{_size(before)} -> {_size(after)} in {cache_dir}\n"
    )
    for error in pruned.errors:
        warn(f"cache eviction: {error}")
    return 1 if pruned.errors else 0


def _info(cache_dir: Path, output: str) -> int:
    remotes = info(cache_dir)
    policy = Policy.from_env()
    if output == "json":
        document = {
            "cacheDir": str(cache_dir),
            "bytes": _total(remotes),
            "policy": {
                "maxTrees": policy.max_trees,
                "maxAgeDays": policy.max_age_days,
                "maxBytes": policy.max_bytes,
            },
            "remotes": [
                {
                    "key": r.key,
                    "checkouts": r.checkouts,
                    "checkoutBytes": r.checkout_bytes,
                    "repositoryBytes": r.repo_bytes,
                    "lastUsed": _iso(r.last_used),
                }
                for r in remotes
            ],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0
    rows = [("REMOTE", "CHECKOUTS", "CHECKOUTS SIZE", "REPOSITORY SIZE", "LAST USED")]
    rows += [
        (r.key, str(r.checkouts), _size(r.checkout_bytes), _size(r.repo_bytes), _ago(r.last_used))
        for r in remotes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    if remotes:
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            sys.stdout.write("  ".join(cells).rstrip() + "\n")
    checkouts = sum(r.checkouts for r in remotes)
    sys.stdout.write(
        f"{cache_dir}: {_count(len(remotes), 'remote')}, {_count(checkouts, 'checkout')}, "
        f"{_size(_total(remotes))}\n"
    )
    return 0


def _total(remotes: Sequence[RemoteInfo]) -> int:
    return sum(r.checkout_bytes + r.repo_bytes for r in remotes)


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _iso(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _ago(stamp: float) -> str:
    seconds = max(0.0, time.time() - stamp)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length:.0f}{unit} ago"
    return "just now"
