"""The Export page's download: studio.export writes the mattes and COCO JSON into a temporary
folder, which is zipped in memory for st.download_button."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from studio import export


def matte_zip(store, film, fmt: str = "png", source: str = "best") -> tuple[bytes, bytes, int, list[int]]:
    """(zip bytes with <film>/<film>.<number>.<ext> mattes and the COCO JSON, COCO JSON bytes,
    mattes written, frame numbers with no mask from that source)."""
    with tempfile.TemporaryDirectory(prefix="correlnet-export-") as tmp:
        result = export.export_film(store, film, Path(tmp), fmt=fmt, source=source)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(Path(tmp).iterdir()):
                zf.write(path, arcname=f"{film.name}/{path.name}")
        coco = result.coco_path.read_bytes() if result.coco_path else b"{}"
        return buf.getvalue(), coco, len(result.written), list(result.missing)
