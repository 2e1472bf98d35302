"""Load the pool's Lua scripts and register them once per Redis client."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from redis.commands.core import Script

SCRIPT_NAMES = ("lease", "renew", "release", "reclaim", "sync")


@cache  # read once per process: a PoolService is cheap to build (metrics, the simulator)
def script_source(name: str) -> str:
    """Return a script's source with the shared helpers prepended."""
    lua = resources.files("pools") / "lua"
    common = (lua / "_common.lua").read_text(encoding="utf-8")
    return common + "\n" + (lua / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class PoolScripts:
    """The registered scripts; each call is one EVALSHA (EVAL once after a Redis restart)."""

    lease: Script
    renew: Script
    release: Script
    reclaim: Script
    sync: Script


def register_scripts(redis) -> PoolScripts:
    return PoolScripts(**{name: redis.register_script(script_source(name)) for name in SCRIPT_NAMES})
