"""What an uploaded evidence document is, decided from its bytes alone.

A claim's evidence (invoices, purchase orders, delivery notes) is PDF, JPEG or PNG up to
10 MB. The name, the extension and the Content-Type a client sends prove nothing (an ``.pdf``
may be an HTML page or a program), so the type is detected from the bytes: the format's magic
number and a minimal structural check (a PDF ends with ``%%EOF``, a PNG starts with its IHDR
chunk and ends with IEND, a JPEG has a frame and ends with EOI). Anything else is refused with
a field message. A PDF that names JavaScript (or a launch action) is accepted, flagged as
active content, and like every document only ever served as an attachment.

Limitation (said in the README): names inside compressed object streams are not inflated, so
the flag is a hint for the reviewer, not a guarantee; the attachment-only download is the rule
that protects.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from market.errors import ValidationFailed

MAX_EVIDENCE_BYTES = 10 * 1024 * 1024
PDF, JPEG, PNG = "application/pdf", "image/jpeg", "image/png"
EXTENSIONS = {PDF: ".pdf", JPEG: ".jpg", PNG: ".png"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PDF_HEADER = re.compile(rb"^%PDF-[12]\.[0-9]")
# Names of actions that run something when a PDF is opened; "#xx" escapes are decoded first.
_PDF_ACTIVE = re.compile(rb"/(JavaScript|JS|Launch)(?![A-Za-z0-9])")
_PDF_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic variants).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_FILE_FIELD = "file"
_ACCEPTED = "Only PDF, JPEG and PNG documents are accepted (the content decides, not the name)."


@dataclass(frozen=True)
class DetectedFile:
    content_type: str
    size: int
    sha256: str
    active_content: bool


def refuse(message: str) -> ValidationFailed:
    return ValidationFailed(fields={_FILE_FIELD: [message]})


def _pdf_ok(data: bytes) -> bool:
    return bool(_PDF_HEADER.match(data)) and b"%%EOF" in data[-1024:]


def _pdf_active(data: bytes) -> bool:
    decoded = _PDF_NAME_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data)
    return bool(_PDF_ACTIVE.search(decoded))


def _png_ok(data: bytes) -> bool:
    return (
        data.startswith(_PNG_SIGNATURE)
        and data[8:16] == b"\x00\x00\x00\x0dIHDR"
        and int.from_bytes(data[16:20], "big") > 0
        and int.from_bytes(data[20:24], "big") > 0
        and data.endswith(_PNG_IEND)
    )


def _jpeg_ok(data: bytes) -> bool:
    """SOI, then well-formed marker segments up to a start-of-frame, and EOI at the end."""
    if not data.startswith(b"\xff\xd8") or not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return False
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker in _JPEG_SOF:
            return True
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if length < 2:
            return False
        position += 2 + length
    return False


def detect(data: bytes) -> DetectedFile:
    """The document's type, size and SHA-256 from its bytes (422 on ``file`` otherwise)."""
    if not data:
        raise refuse("The file is empty (0 bytes).")
    if len(data) > MAX_EVIDENCE_BYTES:
        raise refuse(f"The file is larger than 10 MB ({MAX_EVIDENCE_BYTES} bytes).")
    if data.startswith(b"%PDF-"):
        if not _pdf_ok(data):
            raise refuse("Not a complete PDF document (no %%EOF at its end). " + _ACCEPTED)
        content_type, active = PDF, _pdf_active(data)
    elif data.startswith(_PNG_SIGNATURE):
        if not _png_ok(data):
            raise refuse("Not a complete PNG image. " + _ACCEPTED)
        content_type, active = PNG, False
    elif data.startswith(b"\xff\xd8\xff"):
        if not _jpeg_ok(data):
            raise refuse("Not a complete JPEG image. " + _ACCEPTED)
        content_type, active = JPEG, False
    else:
        raise refuse(_ACCEPTED)
    return DetectedFile(content_type, len(data), hashlib.sha256(data).hexdigest(), active)


_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069/\\\"]")


def clean_filename(name: str | None) -> str:
    """The client's file name as a label: its last path part, without controls, quotes or
    bidirectional overrides, at most 200 characters; "document" if nothing is left."""
    base = re.split(r"[/\\]", unicodedata.normalize("NFC", name or ""))[-1]
    cleaned = _UNSAFE_NAME.sub("_", base).strip().lstrip(".")
    return cleaned[:200] or "document"


def download_name(document_id: int, filename: str, content_type: str) -> str:
    """The name a download is saved under: the label with the detected type's extension."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    return f"{stem or f'evidence-{document_id}'}{EXTENSIONS[content_type]}"
