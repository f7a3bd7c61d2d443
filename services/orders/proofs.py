"""What a wire-transfer proof may be (O3), and the name it is kept under. No I/O.

A proof is one real PDF, PNG or JPEG file, checked beyond its first bytes:
- a PDF parses (``pypdf``) and has a page; nothing but whitespace follows its final
  ``%%EOF``;
- an image decodes (``Pillow``); a PNG ends with its ``IEND`` chunk, a JPEG with its
  end-of-image marker: nothing follows them;
- no proof carries a ZIP archive (an end-of-central-directory record that points at a
  central directory): a file that is a PDF to one reader and a ZIP to another is refused.

File names are the client's: ``proof_filename`` keeps a readable name without path
parts, control or bidirectional-override characters, or markup, of bounded length.
"""

from __future__ import annotations

import re
import struct
import unicodedata
from io import BytesIO

from PIL import Image
from pypdf import PdfReader

from shared.basics.errors import ErrorCode, Refused

PDF, PNG, JPEG = "application/pdf", "image/png", "image/jpeg"
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", PDF),
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"\xff\xd8\xff", JPEG),
)
MAX_PIXELS = 25_000_000  # a phone photo or an A4 scan at 400 dpi; a decompression bomb is not
PDF_WHITESPACE = b"\x00\t\n\x0c\r "  # PDF 32000-1, 7.2.2
FILENAME_MAX_CHARS = 120
FILENAME_FALLBACK = "proof"
_MARKUP = str.maketrans({c: "_" for c in "<>\"'`"})


def check_proof(content: bytes, *, max_bytes: int) -> str:
    """The proof's content type (O3), or a precise refusal: empty, too large, not a PDF,
    PNG or JPEG by content, malformed, or carrying something else."""
    if not content:
        raise Refused(ErrorCode.EMPTY_PROOF, "the proof file is empty")
    if len(content) > max_bytes:
        raise Refused(
            ErrorCode.PROOF_TOO_LARGE, f"the proof exceeds the limit of {max_bytes} bytes"
        )
    content_type = next((t for sig, t in SIGNATURES if content.startswith(sig)), None)
    if content_type is None:
        raise Refused(
            ErrorCode.UNSUPPORTED_PROOF_TYPE,
            "a proof must be a PDF, PNG or JPEG file (checked by content, not by name)",
        )
    _refuse_hidden_zip(content)
    if content_type == PDF:
        _check_pdf(content)
    elif content_type == PNG:
        _check_png(content)
        _check_image(content, "PNG")
    else:
        _check_jpeg(content)
        _check_image(content, "JPEG")
    return content_type


def _invalid(message: str) -> Refused:
    return Refused(ErrorCode.INVALID_PROOF, message)


def _refuse_hidden_zip(content: bytes) -> None:
    """A ZIP reader looks for an end-of-central-directory record (``PK\\x05\\x06``) and
    follows it to the central directory (``PK\\x01\\x02``), wherever the archive sits in
    the file. A record that leads there (or a ZIP64 one) is an archive; the signature
    alone, which compressed data may contain by chance, is not."""
    at = content.find(b"PK\x05\x06")
    while at >= 0:
        record = content[at + 4 : at + 22]
        if len(record) == 18:
            _, _, _, entries, size, offset, _ = struct.unpack("<HHHHIIH", record)
            zip64 = entries == 0xFFFF or offset == 0xFFFFFFFF
            directory = {offset, at - size}
            if zip64 or any(
                0 <= d <= len(content) - 4 and content[d : d + 4] == b"PK\x01\x02"
                for d in directory
            ):
                raise _invalid(
                    f"the file also holds a ZIP archive (its directory ends at byte {at}): "
                    "a proof is one PDF, PNG or JPEG, nothing else"
                )
        at = content.find(b"PK\x05\x06", at + 1)


def _check_pdf(content: bytes) -> None:
    end = content.rfind(b"%%EOF")
    if end < 0:
        raise _invalid("the PDF has no %%EOF marker: it is truncated or not a PDF")
    trailing = len(content[end + 5 :].strip(PDF_WHITESPACE))
    if trailing:
        raise _invalid(
            f"{trailing} bytes follow the PDF's final %%EOF: a proof is one PDF, nothing else"
        )
    try:
        reader = PdfReader(BytesIO(content), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise _invalid("the PDF is password-protected: send it without a password")
        pages = len(reader.pages)
    except Refused:
        raise
    except Exception as exc:  # pypdf raises many kinds on malformed input
        raise _invalid(f"the PDF does not parse ({type(exc).__name__})") from exc
    if pages == 0:
        raise _invalid("the PDF has no page")


def _check_png(content: bytes) -> None:
    """Walk the chunks from the signature to ``IEND``: nothing may follow it."""
    at = 8
    while True:
        header = content[at : at + 8]
        if len(header) < 8:
            raise _invalid("the PNG ends before its IEND chunk: it is truncated")
        length, kind = struct.unpack(">I4s", header)
        at += 12 + length  # length, type, data, CRC
        if at > len(content):
            raise _invalid("the PNG ends inside a chunk: it is truncated")
        if kind == b"IEND":
            break
    if at != len(content):
        raise _invalid(
            f"{len(content) - at} bytes follow the PNG's IEND chunk: "
            "a proof is one image, nothing else"
        )


_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length


def _check_jpeg(content: bytes) -> None:
    """Walk the markers from SOI to EOI, through the entropy-coded scans: nothing may
    follow EOI (an EXIF thumbnail's own EOI inside APP1 is skipped with its segment)."""
    at, size = 2, len(content)
    while True:
        if at + 2 > size or content[at] != 0xFF:
            raise _invalid("the JPEG's markers are broken or it ends before its end of image")
        marker = content[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:  # EOI
            at += 2
            break
        if marker in _STANDALONE:
            at += 2
            continue
        if at + 4 > size:
            raise _invalid("the JPEG ends inside a marker: it is truncated")
        (length,) = struct.unpack(">H", content[at + 2 : at + 4])
        at += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            at = _end_of_scan(content, at)
    if at != size:
        raise _invalid(
            f"{size - at} bytes follow the JPEG's end of image: a proof is one image, nothing else"
        )


def _end_of_scan(content: bytes, at: int) -> int:
    while True:
        at = content.find(b"\xff", at)
        if at < 0 or at + 1 >= len(content):
            raise _invalid("the JPEG ends inside its image data: it is truncated")
        following = content[at + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            at += 1 if following == 0xFF else 2  # stuffed byte, restart marker, fill byte
            continue
        return at


def _check_image(content: bytes, kind: str) -> None:
    try:
        with Image.open(BytesIO(content), formats=[kind]) as image:
            image.verify()  # chunk checksums, structure
        with Image.open(BytesIO(content), formats=[kind]) as image:
            if image.width * image.height > MAX_PIXELS:
                raise _invalid(
                    f"the image has {image.width}x{image.height} pixels; "
                    f"the limit is {MAX_PIXELS:,} pixels"
                )
            image.load()  # every pixel decodes
    except Refused:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise _invalid(f"the {kind} image does not decode ({type(exc).__name__})") from exc


def proof_filename(raw: str | None) -> str:
    """A readable, harmless name for an uploaded file: its last path part, without
    control, format (bidirectional overrides, zero-width) or unassigned characters,
    markup replaced by ``_``, spaces collapsed, no leading or trailing dots, at most
    ``FILENAME_MAX_CHARS`` characters (the extension kept); ``proof`` if nothing is left."""
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[/\\]", name)[-1]
    kept = []
    for char in name:
        category = unicodedata.category(char)
        if category == "Zs" or char in "\t\n\r":
            kept.append(" ")
        elif category[0] not in "CZ":
            kept.append(char)
    name = re.sub(r" +", " ", "".join(kept).translate(_MARKUP)).strip(" .")
    if len(name) > FILENAME_MAX_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10 and stem:
            name = stem[: FILENAME_MAX_CHARS - len(extension) - 1].rstrip(" .") + "." + extension
        else:
            name = name[:FILENAME_MAX_CHARS].rstrip(" .")
    return name or FILENAME_FALLBACK
