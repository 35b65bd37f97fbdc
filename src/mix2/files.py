"""Files written whole or not at all, file checksums, and where mix2 caches.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
    >>> with atomic_path(path) as partial:
    ...     _ = partial.write_text("{}")
    >>> path.read_text(), md5sum(path)
    ('{}', '99914b932bd37a50b983c5e7c90ae93b')
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK_BYTES = 1 << 20


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield ``<path>.partial`` to write to; it replaces ``path`` only once the block succeeds.

    The partial file is flushed to disk before the rename, so a kill or a power cut while
    writing leaves the previous ``path`` (or none) intact, never a half-written one.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    yield partial
    with partial.open("rb+") as handle:
        os.fsync(handle.fileno())
    partial.replace(path)


@contextmanager
def own_partial(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a partial file of this process's own beside ``path``; it replaces ``path`` once the block succeeds.

    For files that several processes may write at once (cache entries, exported networks): each
    writes its own partial, and whichever rename comes last leaves a whole file. The partial is
    removed where the block fails. ``durable`` flushes it to disk before the rename, as
    :func:`atomic_path` does; a cache entry that a power cut loses is simply made again.
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        if durable:
            with partial.open("rb+") as written:
                os.fsync(written.fileno())
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def cache_root() -> Path:
    """Where features, the synthetic chorus and exported networks are cached: ``$MIX2_CACHE_DIR`` or ``~/.cache/mix2``."""
    return Path(os.environ.get("MIX2_CACHE_DIR", Path.home() / ".cache" / "mix2"))


def md5sum(path: str | Path) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
