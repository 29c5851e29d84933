"""The Export page's download: studio.export writes the mattes and COCO JSON into a temporary
folder, which is zipped in memory for st.download_button."""

from __future__ import annotations

import io
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from studio import export

_COCO_SUFFIX = ".coco.json"


@dataclass(frozen=True)
class MatteArchive:
    """zip_bytes: `<stem>/<stem>.<number>.<ext>` mattes and `<stem>/<stem>.coco.json`; coco: the COCO
    JSON bytes; written: mattes written; missing: frame numbers with no mask from the source; stem: the
    file-name-safe film name studio.export gave the files, also used for the download names."""

    zip_bytes: bytes
    coco: bytes
    written: int
    missing: list[int]
    stem: str


def matte_zip(store, film, fmt: str = "png", source: str = "best") -> MatteArchive:
    """Export `film` through studio.export and zip the result in memory.

    Member names come from the files studio.export wrote (one path component each, made safe there),
    never from film.name: a film stored before names were checked ("../../x", a newline) cannot put a
    member outside the archive's folder."""
    with tempfile.TemporaryDirectory(prefix="correlnet-export-") as tmp:
        result = export.export_film(store, film, Path(tmp), fmt=fmt, source=source)
        stem = result.coco_path.name.removesuffix(_COCO_SUFFIX)  # export names it `<stem>.coco.json`
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(Path(tmp).iterdir()):
                zf.write(path, arcname=f"{stem}/{path.name}")
        return MatteArchive(buf.getvalue(), result.coco_path.read_bytes(), len(result.written),
                            list(result.missing), stem)
