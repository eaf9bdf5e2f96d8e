"""``--ray [ADDRESS]``, shared by the commands that can run on a Ray cluster, and what their
workers build an engine from. Nothing here imports Ray until ``--ray`` is given."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diffill.distributed import EngineSpec

def add_ray_option(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("--ray", nargs="?", const=FIND_CLUSTER, default=None, metavar="ADDRESS",
                   help=f"{verb} on a Ray cluster (needs diffill[ray]): its ADDRESS (host:port, or "
                        "ray://host:10001), 'auto' (the cluster RAY_ADDRESS or `ray start` on this machine "
                        "names), or without a value, that one if any, else a new one on this machine; each "
                        "worker loads the model once, this process reads and writes every file")


FIND_CLUSTER = ""  # --ray without an address


def engine_spec(args: argparse.Namespace, threads: int) -> EngineSpec:
    """What each Ray worker builds its engine from."""
    from diffill.distributed import EngineSpec

    return EngineSpec.from_args(args, threads=threads)
