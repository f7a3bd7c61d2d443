"""Proof files that a strict checker accepts (O3: a PDF must parse), for tests and benches.

``minimal_pdf`` writes a one-page PDF by hand: catalogue, page tree, one page with a
Helvetica text line, and a cross-reference table whose byte offsets are exact, so a
strict parser (``pypdf.PdfReader(..., strict=True)``) reads it without repairing it.
"""

from __future__ import annotations


def _escape(text: str) -> str:
    """``text`` as the inside of a PDF literal string (ASCII only)."""
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    return ascii_text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def minimal_pdf(text: str = "Wire transfer proof") -> bytes:
    """A valid one-page PDF showing ``text`` (a few hundred bytes)."""
    content = f"BT /F1 12 Tf 72 720 Td ({_escape(text)}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
