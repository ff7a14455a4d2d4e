"""Reading an export: every malformed input is one clear line, and no store is touched."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pseudowa.proxy.cassette import seeds
from pseudowa.proxy.cassette.tape import index_exchange as index_events
from pseudowa.proxy.cli.main import cli
from pseudowa.storage.errors import StoreError
from pseudowa.storage.export import CASSETTE_FILE
from pseudowa.storage.export import export_cassette
from pseudowa.storage.export import import_cassette
from pseudowa.storage.export import is_export_dir
from pseudowa.storage.export import read_export
from pseudowa.storage.store import CassetteStore

# -- import: malformed input --------------------------------------------------------------------


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_bytes())
    change(doc)
    path.write_text(json.dumps(doc))


def _first_media(doc: dict[str, Any]) -> dict[str, Any]:
    media: dict[str, Any] = doc["media"][0]
    return media


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "no cassette.json": (lambda d: (d / CASSETTE_FILE).unlink(), "holds no cassette.json"),
    "not JSON": (lambda d: (d / CASSETTE_FILE).write_text("{oops"), "is not valid JSON: .* line 1"),
    "not UTF-8": (lambda d: (d / CASSETTE_FILE).write_bytes(b"\xff\xfe{}"), "is not UTF-8"),
    "not an object": (lambda d: (d / CASSETTE_FILE).write_text("[]"), "expected an object"),
    "NaN": (lambda d: (d / CASSETTE_FILE).write_text('{"a": NaN}'), "NaN is not a JSON number"),
    "other format": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: j.update(format="vcr")),
        "not a pseudowa cassette export",
    ),
    "newer version": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: j.update(format_version=99)),
        "format version 99 is newer than this pseudowa reads",
    ),
    "missing metadata": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: j.pop("cassette")),
        "missing 'cassette'",
    ),
    "bad name": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: j["cassette"].update(name="../x")),
        r"cassette.name: invalid cassette name",
    ),
    "bad date": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: j["cassette"].update(created_at="yesterday")),
        "cassette.created_at: 'yesterday' is not an ISO 8601",
    ),
    "bad kind": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: j["interactions"][0].update(kind="email")),
        r"interactions\[0\].kind: 'email' is not one of webhook, graph, media",
    ),
    "bad offset": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: j["interactions"][0].update(offset_s="soon")),
        r"interactions\[0\].offset_s: expected a number, got a string",
    ),
    "bad headers": (
        lambda d: _edit(
            d / CASSETTE_FILE, lambda j: j["interactions"][0]["request"].update(headers=[["a"]])
        ),
        r"interactions\[0\].request.headers\[0\]: expected a \[name, value\] pair",
    ),
    "two body forms": (
        lambda d: _edit(
            d / CASSETTE_FILE, lambda j: j["interactions"][0]["request"]["body"].update(text="x")
        ),
        r"request.body: expected exactly one of json, text, base64, file",
    ),
    "unknown encoding": (
        lambda d: _edit(
            d / CASSETTE_FILE,
            lambda j: j["interactions"][0]["request"]["body"].update(encoding="yaml"),
        ),
        "unknown JSON encoding 'yaml'",
    ),
    "seq not a number": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: j["interactions"][0].update(seq="abc")),
        r"cassette.json: interactions\[0\].seq: expected an integer, got a string",
    ),
    "duplicated seq": (
        lambda d: _edit(
            d / CASSETTE_FILE,
            lambda j: j["interactions"].append(copy.deepcopy(j["interactions"][0])),
        ),
        r"cassette.json: interactions\[1\].seq: 0 is already the seq of interactions\[0\]",
    ),
    "encoding on a text body": (
        lambda d: _edit(
            d / CASSETTE_FILE,
            lambda j: j["interactions"][0]["response"].update(
                body={"text": "hi", "encoding": "latin-1"}
            ),
        ),
        r"interactions\[0\].response.body.encoding: only a json body has an encoding",
    ),
    "unknown body key": (
        lambda d: _edit(
            d / CASSETTE_FILE,
            lambda j: j["interactions"][0]["response"].update(body={"base64": "", "gzip": True}),
        ),
        r"interactions\[0\].response.body: unknown key 'gzip' in a base64 body",
    ),
    "bad base64": (
        lambda d: _edit(
            d / CASSETTE_FILE,
            lambda j: j["interactions"][0]["response"].update(body={"base64": "!!"}),
        ),
        r"response.body.base64: not valid base64",
    ),
    "body file outside": (
        lambda d: _edit(
            d / CASSETTE_FILE,
            lambda j: j["interactions"][0]["response"].update(body={"file": "../etc/passwd"}),
        ),
        r"is not of the form bodies/<sha256>",
    ),
    "media file missing": (lambda d: shutil.rmtree(d / "media"), r"media\[0\].file: .* is missing"),
    "media file tampered": (
        lambda d: next((d / "media").iterdir()).write_bytes(b"evil"),
        r"media\[0\].file: the bytes of .* hash to [0-9a-f]{64}, not the sha256",
    ),
    "media path traversal": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: _first_media(j).update(file="../../x.png")),
        r"media\[0\].file: '../../x.png' is not of the form media/<sha256>",
    ),
    "media size": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: _first_media(j).update(size=1)),
        r"media\[0\].size: .* has 263 bytes, not 1",
    ),
    "media name vs sha": (
        lambda d: _edit(d / CASSETTE_FILE, lambda j: _first_media(j).update(sha256="0" * 64)),
        r"media\[0\].file: .* does not name sha256 0000",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_malformed_import_is_one_clear_line(
    case: str, fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    source = fresh("source")
    seeds.image_seed(source, "img")
    export_cassette(source, "img", tmp_path / "img")
    damage, expected = BROKEN[case]
    damage(tmp_path / "img")
    target = fresh("target")
    with pytest.raises(StoreError, match=expected) as caught:
        import_cassette(target, tmp_path / "img", index_events=index_events)
    assert "\n" not in str(caught.value)
    assert target.list_cassettes() == []
    # The CLI prints that line alone, exit 1, no traceback.
    result = CliRunner().invoke(
        cli, ["cassette", "import", str(tmp_path / "img"), "--db", str(target.engine.url)]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")


def test_import_of_a_missing_directory(
    fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    with pytest.raises(StoreError, match="is not a directory"):
        import_cassette(fresh("s"), tmp_path / "nowhere")


def test_read_export_checks_everything_and_touches_no_store(
    fresh: Callable[[str], CassetteStore], tmp_path: Path
) -> None:
    source = fresh("source")
    seeds.image_seed(source, "img")
    export_cassette(source, "img", tmp_path / "img")

    doc = read_export(tmp_path / "img")

    assert doc.name == "img"
    assert [x.kind for x in doc.exchanges] == [x.kind for x in source.interactions("img")]
    [media] = doc.media
    assert media.sha256 == source.list_media("img")[0].sha256
    assert media.path.read_bytes() == source.read_media(media.sha256)


def test_is_export_dir_needs_a_cassette_json(tmp_path: Path) -> None:
    assert not is_export_dir(str(tmp_path))
    assert not is_export_dir(str(tmp_path / "nowhere"))
    (tmp_path / CASSETTE_FILE).write_text("{}")
    assert is_export_dir(str(tmp_path))
