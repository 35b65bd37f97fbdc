"""Download published datasets: resumable, checksum-verified, unpacked to the layout mix2 reads.

AnuraSet is Zenodo record 8342596, file ``anuraset.zip`` (about 10.5 GB). Its size and MD5
come from Zenodo's records API; the archive is fetched into ``DIR/anuraset.zip.partial`` with
HTTP range requests, so an interrupted download goes on from the bytes already there, checked
against the MD5, then unpacked so that ``DIR/metadata.csv`` and ``DIR/audio/<site>/`` exist
(the archive's single top folder is dropped). ``DIR/.mix2-download.json`` marks a finished
download; a second call then does nothing.

Example:
    >>> root = download("anuraset", "data/anuraset")  # doctest: +SKIP
    >>> read_anuraset(root)  # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import json
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from mix2.errors import Mix2Error, input_error
from mix2.files import CHUNK_BYTES, md5sum

ZENODO_API = "https://zenodo.org/api"
MARKER = ".mix2-download.json"


@dataclass(frozen=True)
class ZenodoArchive:
    """A zip archive in a Zenodo record, and the file whose presence proves it was unpacked."""

    record: str
    key: str
    expect: str


DATASETS = {"anuraset": ZenodoArchive(record="8342596", key="anuraset.zip", expect="metadata.csv")}


@dataclass(frozen=True)
class RemoteFile:
    url: str
    size: int
    md5: str


def download(name: str, dest: str | Path, api_url: str = ZENODO_API, keep_archive: bool = False, progress: bool = True) -> Path:
    """Download dataset ``name`` into ``dest``, verify it and unpack it; returns ``dest``.

    Args:
        name: a key of :data:`DATASETS` (``"anuraset"``).
        dest: the folder to fill; it becomes the folder that ``mix2 train --data`` takes.
        api_url: Zenodo's API root (tests point it at a local server).
        keep_archive: keep the verified zip after unpacking (it is deleted by default).
        progress: show a progress bar.
    """
    if name not in DATASETS:
        raise Mix2Error(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    archive, dest = DATASETS[name], Path(dest)
    if (dest / MARKER).is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    remote = zenodo_file(api_url, archive.record, archive.key)
    zip_path = dest / archive.key
    if not zip_path.is_file():
        partial = dest / f"{archive.key}.partial"
        fetch(remote, partial, progress)
        actual = md5sum(partial)
        if actual != remote.md5:
            partial.unlink()
            raise input_error(partial, f"checksum mismatch (md5 {actual}, Zenodo says {remote.md5}); removed, run again")
        partial.replace(zip_path)
    unpack(zip_path, dest)
    if not (dest / archive.expect).is_file():
        raise input_error(zip_path, f"unpacked, but {archive.expect} is not in it; is this the right archive?")
    (dest / MARKER).write_text(json.dumps({"record": archive.record, "key": archive.key, "md5": remote.md5}))
    if not keep_archive:
        zip_path.unlink()
    return dest


def zenodo_file(api_url: str, record: str, key: str) -> RemoteFile:
    """The download address, size and MD5 of file ``key`` in Zenodo record ``record``."""
    url = f"{api_url.rstrip('/')}/records/{record}"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            listing = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise Mix2Error(f"{url}: cannot read the Zenodo record ({_reason(err)})") from None
    files = listing.get("files", [])
    entries = files.get("entries", {}).values() if isinstance(files, dict) else files
    for entry in entries:
        if entry.get("key") == key:
            algorithm, _, digest = str(entry.get("checksum", "")).partition(":")
            if algorithm != "md5" or not digest:
                raise Mix2Error(f"{url}: {key} has no MD5 checksum to verify against")
            links = entry.get("links", {})
            address = links.get("content") or links.get("self") or f"{url}/files/{key}/content"
            return RemoteFile(address, int(entry["size"]), digest)
    raise Mix2Error(f"{url}: the record has no file {key}")


def fetch(remote: RemoteFile, partial: Path, progress: bool = True) -> None:
    """Download ``remote`` into ``partial``, going on from the bytes already there."""
    have = partial.stat().st_size if partial.is_file() else 0
    if have > remote.size:
        partial.unlink()
        have = 0
    if have == remote.size:
        return
    request = urllib.request.Request(remote.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if have and response.status != 206:  # the server ignored the range: start again
                have = 0
            with (
                partial.open("ab" if have else "wb") as out,
                tqdm(total=remote.size, initial=have, unit="B", unit_scale=True, disable=not progress) as bar,
            ):
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise Mix2Error(f"{remote.url}: download interrupted ({_reason(err)}); run the same command again to resume") from None
    got = partial.stat().st_size
    if got != remote.size:
        raise Mix2Error(f"{remote.url}: download stopped at {got} of {remote.size} bytes; run the same command again to resume")


def unpack(zip_path: Path, dest: Path) -> None:
    """Extract ``zip_path`` into ``dest``, dropping a single top folder; refuses unsafe member names."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = [m for m in archive.infolist() if not m.filename.startswith("__MACOSX/")]
            names = [PurePosixPath(m.filename) for m in members]
            unsafe = [str(n) for n in names if n.is_absolute() or ".." in n.parts or "\\" in str(n)]
            if unsafe:
                raise input_error(zip_path, f"refusing unsafe member name '{unsafe[0]}'")
            tops = {n.parts[0] for n in names if n.parts}
            strip = 1 if len(tops) == 1 and all(len(n.parts) > 1 or m.is_dir() for n, m in zip(names, members)) else 0
            for member, name in zip(members, names):
                if member.is_dir() or len(name.parts) <= strip:
                    continue
                target = dest.joinpath(*name.parts[strip:])
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK_BYTES)
    except zipfile.BadZipFile as err:
        raise input_error(zip_path, f"not a readable zip archive ({err})") from None


def _reason(err: BaseException) -> str:
    return str(getattr(err, "reason", None) or err) or type(err).__name__


__all__ = ["DATASETS", "download", "fetch", "unpack", "zenodo_file"]
