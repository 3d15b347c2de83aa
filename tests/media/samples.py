"""Small media files made on the fly (no binary fixtures): a PDF (pypdf), a PNG (Pillow), a WAV (stdlib
``wave``) and an MP4 (its boxes written by hand: ``ftyp``, ``moov`` with an ``mvhd`` giving the duration,
an empty ``mdat``; enough for mutagen to read the length, not a playable video)."""

from __future__ import annotations

import io
import struct
import wave


def pdf(pages: int = 3, *, text_bytes: int = 0) -> bytes:
    """A PDF of `pages` blank letter-size pages; `text_bytes` pads it with an unused stream."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, NameObject

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    if text_bytes:
        padding = DecodedStreamObject()
        padding.set_data(b"%" * text_bytes)
        writer._root_object[NameObject("/Padding")] = writer._add_object(padding)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png(width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def wav(seconds: float = 2.0, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return out.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4(seconds: float = 2.5, *, padding: int = 0) -> bytes:
    """An MP4 container whose movie header says `seconds` (timescale 1000); `padding` bytes of mdat."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    header = struct.pack(">I", 0) + struct.pack(">IIII", 0, 0, 1000, round(seconds * 1000))
    mvhd = _box(
        b"mvhd", header + struct.pack(">IH", 0x00010000, 0x0100) + b"\0" * 10 + matrix + b"\0" * 24 + b"\0\0\0\2"
    )
    return ftyp + _box(b"moov", mvhd) + _box(b"mdat", b"\0" * padding)
