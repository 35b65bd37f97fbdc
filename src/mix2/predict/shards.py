"""A large archive over N jobs: which shard each recording falls in, and a digest of what a job listed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mix2.errors import Mix2Error


def _path_bytes(path: Path) -> bytes:
    return str(path).encode("utf-8", "surrogateescape")  # names that are not UTF-8 keep their bytes


def shard_of(path: Path, shards: int) -> int:
    """The shard (1 to ``shards``) of a recording: a hash of its path as listed, the same in every job.

    Example:
        >>> shard_of(Path("site1/20240101_0000.wav"), 4) == shard_of(Path("site1/20240101_0000.wav"), 4)
        True
    """
    return int(hashlib.sha1(_path_bytes(path)).hexdigest()[:16], 16) % shards + 1


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """``shard`` as ``(i, n)`` if ``1 <= i <= n``, else a one-line error."""
    index, shards = shard
    if not (isinstance(index, int) and isinstance(shards, int) and 1 <= index <= shards):
        raise Mix2Error(f"a shard is I/N with 1 <= I <= N, got {index}/{shards}")
    return shard


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/10"`` -> ``(3, 10)``; anything else is a one-line error.

    Example:
        >>> parse_shard("3/10")
        (3, 10)
    """
    index, _, shards = text.partition("/")
    if not (index.strip().isdigit() and shards.strip().isdigit()):
        raise Mix2Error(f"--shard takes I/N, e.g. 3/10 (shard 3 of 10), got '{text}'")
    return check_shard((int(index), int(shards)))


def listing_digest(listing: list[Path]) -> str:
    """A digest of the recordings a prediction listed, in order: jobs that list alike have equal digests."""
    digest = hashlib.sha1()
    for path in listing:
        digest.update(_path_bytes(path) + b"\n")
    return digest.hexdigest()
