"""Cassettes as reviewable files: export, import, and reading an export on its own.

The format is documented in `format.py`; `writer.py` writes it, `reader.py` reads and
checks it without a store, `importer.py` puts what it read into a store.
"""

from __future__ import annotations

from .format import CASSETTE_FILE
from .importer import import_cassette
from .importer import import_document
from .importer import temporary_import
from .reader import is_export_dir
from .reader import read_export
from .writer import export_cassette

__all__ = [
    "CASSETTE_FILE",
    "export_cassette",
    "import_cassette",
    "import_document",
    "is_export_dir",
    "read_export",
    "temporary_import",
]
