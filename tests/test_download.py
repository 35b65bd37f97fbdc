"""`mix2 download`, against a Zenodo stand-in that this test serves on 127.0.0.1."""

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from conftest import write_tone
from mix2.cli import main
from mix2.data.anuraset import ANURASET_SPECIES, read_anuraset
from mix2.data.download import MARKER, download
from mix2.errors import Mix2Error


def anuraset_zip(tmp_path) -> bytes:
    """A small archive laid out as the published one: anuraset/{README.txt, metadata.csv, audio/<site>/...}."""
    rows = []
    for k, (site, subset) in enumerate([("INCT4", "train"), ("INCT4", "test"), ("INCT17", "train"), ("INCT17", "test")]):
        name = f"{site}_20191231_203000_{k}_{k + 3}.wav"
        write_tone(tmp_path / "audio" / site / name, 3.0, 22_050, 500 + 100 * k)
        labels = {s: int(i == k) for i, s in enumerate(ANURASET_SPECIES)}
        rows.append({"sample_name": name, "fname": f"{site}_20191231_203000", "min_t": k, "max_t": k + 3,
                     "site": site, "date": "2019-12-31 20:30:00", "subset": subset, "species_number": 1, **labels})  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("anuraset/README.txt", "AnuraSet\n")
        archive.writestr("anuraset/metadata.csv", pd.DataFrame(rows).to_csv(index=False))
        for row in rows:
            archive.write(
                tmp_path / "audio" / row["site"] / row["sample_name"], f"anuraset/audio/{row['site']}/{row['sample_name']}"
            )
    return buffer.getvalue()


class Zenodo:
    """A records API and a file server with HTTP range requests; can cut a transfer short once."""

    def __init__(self, payload: bytes, md5: str | None = None) -> None:
        self.payload, self.md5 = payload, md5 or hashlib.md5(payload).hexdigest()
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []
        zenodo = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_GET(self):
                if self.path == "/api/records/8342596":
                    body = json.dumps({"files": [{"key": "anuraset.zip", "size": len(zenodo.payload), "checksum": f"md5:{zenodo.md5}",
                                                  "links": {"self": f"{zenodo.url}/files/anuraset.zip"}}]}).encode()  # fmt: skip
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                zenodo.ranges.append(self.headers.get("Range"))
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                body = zenodo.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if zenodo.cut_after is not None:  # send part of it, then drop the connection
                    body, zenodo.cut_after = body[: zenodo.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api = f"{self.url}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def zenodo(tmp_path):
    server = Zenodo(anuraset_zip(tmp_path / "source"))
    yield server
    server.close()


def test_downloads_verifies_and_unpacks_to_the_layout_the_reader_takes(zenodo, tmp_path):
    root = download("anuraset", tmp_path / "anuraset", zenodo.api, progress=False)
    table = read_anuraset(root)
    assert len(table) == 4 and table.clips["split"].tolist() == ["train", "test", "train", "test"]
    assert (root / "README.txt").is_file() and (root / MARKER).is_file() and not (root / "anuraset.zip").exists()
    assert zenodo.ranges == [None]
    download("anuraset", root, zenodo.api, progress=False)  # finished: nothing is fetched again
    assert zenodo.ranges == [None]


def test_an_interrupted_download_resumes_from_the_bytes_it_has(zenodo, tmp_path):
    zenodo.cut_after = 1000
    with pytest.raises(Mix2Error, match="download stopped at 1000 of .* bytes; run the same command again to resume"):
        download("anuraset", tmp_path / "a", zenodo.api, progress=False)
    assert (tmp_path / "a" / "anuraset.zip.partial").stat().st_size == 1000
    download("anuraset", tmp_path / "a", zenodo.api, keep_archive=True, progress=False)
    assert zenodo.ranges == [None, "bytes=1000-"]
    assert (tmp_path / "a" / "anuraset.zip").read_bytes() == zenodo.payload and (tmp_path / "a" / "metadata.csv").is_file()


def test_a_checksum_mismatch_is_refused_and_the_bad_bytes_removed(tmp_path):
    server = Zenodo(anuraset_zip(tmp_path / "source"), md5="0" * 32)
    try:
        with pytest.raises(Mix2Error, match=r"anuraset.zip.partial: checksum mismatch \(md5 [0-9a-f]{32}, Zenodo says 0{32}\)"):
            download("anuraset", tmp_path / "a", server.api, progress=False)
    finally:
        server.close()
    assert not (tmp_path / "a" / "anuraset.zip.partial").exists() and not (tmp_path / "a" / "metadata.csv").exists()


def test_unsafe_member_names_are_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../escape.txt", "no")
    server = Zenodo(buffer.getvalue())
    try:
        with pytest.raises(Mix2Error, match="refusing unsafe member name '../escape.txt'"):
            download("anuraset", tmp_path / "a", server.api, progress=False)
    finally:
        server.close()
    assert not (tmp_path / "escape.txt").exists()


def test_cli_download_and_an_unreachable_server(zenodo, tmp_path, capsys):
    assert main(["download", "anuraset", str(tmp_path / "a"), "--zenodo-api", zenodo.api, "--quiet"]) == 0
    assert "train on it with: mix2 train --data" in capsys.readouterr().out
    assert main(["download", "anuraset", str(tmp_path / "b"), "--zenodo-api", "http://127.0.0.1:9/api", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert (
        error.startswith("mix2: error: http://127.0.0.1:9/api/records/8342596: cannot read the Zenodo record")
        and error.count("\n") == 1
    )
