"""Real proof files, and the polyglots an attacker would send instead (O3).

``pdf`` is written by hand (``testkit.proofs.minimal_pdf``: exact cross-reference
offsets), so the checker that reads it is not the library that wrote it; the images
come from Pillow. Each is a few hundred bytes.
"""

from __future__ import annotations

import io
import zipfile

from PIL import Image

from testkit.proofs import minimal_pdf

ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00"  # an x86-64 ELF header


def pdf(text: str = "Wire transfer 319.20 EUR") -> bytes:
    """A valid one-page PDF showing ``text`` (``testkit.proofs``, which benches use too)."""
    return minimal_pdf(text)


def _image(kind: str, size: tuple[int, int] = (2, 2)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=kind)
    return buffer.getvalue()


def png(size: tuple[int, int] = (2, 2)) -> bytes:
    return _image("PNG", size)


def jpeg(size: tuple[int, int] = (2, 2)) -> bytes:
    return _image("JPEG", size)


def zip_archive(name: str = "payload.exe", data: bytes = ELF) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def pdf_with_zip_inside() -> bytes:
    """A PDF that is also a ZIP: the archive hidden in a stream object before the
    cross-reference table, so the PDF still ends with ``%%EOF`` (a lenient unzip finds
    the archive's directory in the file's last 64 KB)."""
    archive = zip_archive()
    base = pdf()
    cut = base.index(b"xref\n")
    hidden = b"6 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n" % (
        len(archive),
        archive,
    )
    return base[:cut] + hidden + base[cut:]


PDF = pdf()
PNG = png()
JPEG = jpeg()
POLYGLOTS: dict[str, bytes] = {
    "pdf+zip appended": PDF + zip_archive(),
    "pdf+zip inside": pdf_with_zip_inside(),
    "pdf+junk after %%EOF": PDF + b"<script>alert(1)</script>",
    "png+elf": PNG + ELF,
    "png+zip": PNG + zip_archive(),
    "jpeg+trailing data": JPEG + b"#!/bin/sh\nrm -rf /\n",
    "jpeg+zip": JPEG + zip_archive(),
}
