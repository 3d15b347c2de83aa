"""Sample media the Gemini file recipes make themselves (nothing downloaded, nothing licensed).

* `flight_plan_pdf`: a twelve-page PDF written by hand (plain PDF objects, Helvetica text): a summary
  flight plan in the spirit of the Apollo 17 plan Google's caching guide uses, in our own words, from
  the mission's public facts;
* `countdown_video`: a short Motion-JPEG AVI (frames drawn with Pillow, the ``cookbook`` extra), a real
  video Gemini can watch: a countdown, a launch and the landing site.

`upload_bar` draws an upload progress bar with rich (the ``progress`` extra) on a terminal, and nothing
when the output is not one (tests, pipes, CI).
"""

from __future__ import annotations

import io
import struct
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["countdown_video", "flight_plan_pdf", "upload_bar"]

MISSION = {
    "crew": "Eugene A. Cernan (commander), Ronald E. Evans (command module pilot), "
    "Harrison H. Schmitt (lunar module pilot)",
    "launch": "December 7, 1972, 12:33 a.m. EST, Launch Complex 39A, Kennedy Space Center",
    "landing": "Taurus-Littrow valley, December 11, 1972",
    "splashdown": "Pacific Ocean, December 19, 1972",
    "spacecraft": "command and service module America, lunar module Challenger",
}

_PAGES = [
    (
        "Mission summary",
        [
            f"Crew: {MISSION['crew']}.",
            f"Launch: {MISSION['launch']}; the only night launch of the program.",
            f"Spacecraft: {MISSION['spacecraft']}.",
            f"Lunar landing: {MISSION['landing']}.",
            f"Splashdown: {MISSION['splashdown']}, recovery by USS Ticonderoga.",
            "Objectives: geology of highland and valley sites, deploy ALSEP, collect samples.",
        ],
    ),
    (
        "Launch and earth orbit",
        [
            "GET 000:00 Liftoff, delayed 2 h 40 min by a terminal countdown sequencer hold.",
            "GET 000:12 Earth orbit insertion, 90 nautical miles.",
            "GET 003:12 Translunar injection burn of the S-IVB third stage.",
            "GET 003:42 Transposition, docking with Challenger and extraction.",
            "Checklists: CSM systems, platform alignment, S-IVB evasive maneuver.",
        ],
    ),
    (
        "Translunar coast",
        [
            "GET 010:00 Passive thermal control roll established.",
            "GET 035:30 Midcourse correction 2, SPS burn of 1.7 seconds.",
            "GET 040:00 LM housekeeping and first entry into Challenger.",
            "GET 065:00 Heat flow and convection experiment in the command module.",
            "Crew rest periods: 8 hours each day, staggered with ground monitoring.",
        ],
    ),
    (
        "Lunar orbit insertion",
        [
            "GET 088:54 Lunar orbit insertion burn, 393 seconds, behind the moon.",
            "GET 093:11 Descent orbit initiation, 59 by 14 nautical miles.",
            "GET 107:48 Undocking of Challenger; America circularizes.",
            "GET 110:21 Powered descent initiation.",
            "GET 110:22 Landing at Taurus-Littrow, 2:55 p.m. EST, December 11.",
        ],
    ),
    (
        "First moonwalk (EVA 1)",
        [
            "Duration: 7 h 12 min. LRV deployed and checked out.",
            "ALSEP deployed 185 meters west of the lunar module.",
            "Geology station 1 near Steno crater; deep core drilled to 2.9 meters.",
            "The LRV fender was repaired with maps and clamps.",
            "Samples: 14 kilograms.",
        ],
    ),
    (
        "Second moonwalk (EVA 2)",
        [
            "Duration: 7 h 37 min; the longest drive, 20.3 kilometers.",
            "Station 2 at the foot of the South Massif, Nansen crater.",
            "Station 4 at Shorty crater: orange soil, volcanic glass beads.",
            "Traverse gravimeter and surface electrical properties readings.",
            "Samples: 34 kilograms.",
        ],
    ),
    (
        "Third moonwalk (EVA 3)",
        [
            "Duration: 7 h 15 min. North Massif and Sculptured Hills.",
            "Station 6: the split boulder sampled and photographed.",
            "Plaque on the LM ladder unveiled; commemorative words by the commander.",
            "Last steps on the moon: Cernan, 5:40 p.m. EST, December 14.",
            "Samples: 66 kilograms; total for the mission 110.5 kilograms.",
        ],
    ),
    (
        "Command module solo operations",
        [
            "Evans operates America alone for three days in lunar orbit.",
            "Scientific instrument module: panoramic and mapping cameras.",
            "Lunar sounder radar probes the subsurface along the ground track.",
            "Infrared scanning radiometer maps night-side temperatures.",
            "UV spectrometer measures the lunar atmosphere.",
        ],
    ),
    (
        "Lunar liftoff and rendezvous",
        [
            "GET 185:21 Ascent stage liftoff from Taurus-Littrow, December 14.",
            "GET 187:37 Docking with America.",
            "GET 191:18 Ascent stage jettisoned, later impacted for seismic readings.",
            "Samples and film transferred to the command module.",
            "GET 234:02 Transearth injection burn.",
        ],
    ),
    (
        "Transearth coast",
        [
            "GET 254:54 Deep-space EVA by Evans: film cassettes retrieved, 1 h 5 min.",
            "Midcourse correction 5 executed; 6 and 7 cancelled.",
            "Press conference from America, answers to ground questions.",
            "Stowage checklists for entry.",
            "Crew rest and medical checks.",
        ],
    ),
    (
        "Entry and recovery",
        [
            "GET 301:23 Service module separation.",
            "GET 301:38 Entry interface, 400,000 feet.",
            "GET 301:51 Splashdown, 350 nautical miles southeast of Samoa.",
            "Recovery by USS Ticonderoga, crew aboard in 52 minutes.",
            "Mission elapsed time: 12 days 13 hours 52 minutes.",
        ],
    ),
    (
        "Consumables and margins",
        [
            "SPS propellant margin at splashdown: 4 percent above the redline.",
            "RCS quads A to D within limits throughout the mission.",
            "Cryogenic oxygen: 3 tanks, balanced usage.",
            "LM descent propellant remaining at landing: 117 seconds of hover.",
            "Water: fuel-cell production exceeded usage by 11 percent.",
        ],
    ),
]


def _pdf_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def flight_plan_pdf(path: Path) -> Path:
    """Write the twelve-page flight plan to `path` (once) and return it."""
    if path.exists():
        return path
    objects: list[bytes] = [b"", b""]  # 1: catalog, 2: pages (filled in below)
    font = len(objects) + 1
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for number, (title, lines) in enumerate(_PAGES, 1):
        text = [
            "BT /F1 16 Tf 72 720 Td",
            f"(Apollo 17 summary flight plan - page {number}: {_pdf_text(title)}) Tj",
            "/F1 11 Tf 0 -32 Td",
        ]
        for line in lines:
            for piece in textwrap.wrap(line, 90):
                text += [f"({_pdf_text(piece)}) Tj", "0 -16 Td"]
        text.append("ET")
        stream = "\n".join(text).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        contents = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 %d 0 R >> >> "
            b"/Contents %d 0 R >>" % (font, contents)
        )
        kids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.writelines(b"%010d 00000 n \n" % o for o in offsets)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return path


def _frames(seconds: int, width: int, height: int) -> Iterator[bytes]:
    from PIL import Image, ImageDraw

    for second in range(seconds):
        left = seconds // 2 - second
        if left > 0:
            caption, sky = f"T-minus {left}", (10, 10, 40)
        elif second < seconds - 5:
            caption, sky = f"Liftoff + {-left} s", (255, 140, 0)
        else:
            caption, sky = "Taurus-Littrow", (90, 90, 90)
        image = Image.new("RGB", (width, height), sky)
        draw = ImageDraw.Draw(image)
        draw.rectangle(
            (width // 2 - 8, height - 40 - min(second * 3, height - 60), width // 2 + 8, height - 20), fill="white"
        )
        draw.text((12, 12), caption, fill="white")
        draw.text((12, height - 16), "Apollo 17 - illustration", fill="white")
        jpeg = io.BytesIO()
        image.save(jpeg, format="JPEG", quality=70)
        yield jpeg.getvalue()


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def countdown_video(path: Path, seconds: int = 60, width: int = 320, height: int = 240) -> Path:
    """Write a `seconds`-long Motion-JPEG AVI (one frame a second) to `path` (once) and return it."""
    if path.exists():
        return path
    frames = list(_frames(seconds, width, height))
    biggest = max(len(f) for f in frames)
    avih = struct.pack("<14I", 1_000_000, biggest, 0, 0x10, len(frames), 0, 1, biggest, width, height, 0, 0, 0, 0)
    strh = b"vidsMJPG" + struct.pack(
        "<IHHIIIIIIIIhhhh", 0, 0, 0, 0, 1, 1, 0, len(frames), biggest, 0xFFFFFFFF, 0, 0, 0, width, height
    )
    strf = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, 24, int.from_bytes(b"MJPG", "little"), width * height * 3, 0, 0, 0, 0
    )
    strl = b"LIST" + struct.pack("<I", 4 + len(_chunk(b"strh", strh)) + len(_chunk(b"strf", strf))) + b"strl"
    strl += _chunk(b"strh", strh) + _chunk(b"strf", strf)
    hdrl_body = b"hdrl" + _chunk(b"avih", avih) + strl
    movi_body = b"movi"
    index = b""
    for frame in frames:
        offset = len(movi_body)
        movi_body += _chunk(b"00dc", frame)
        index += b"00dc" + struct.pack("<III", 0x10, offset, len(frame))
    body = b"AVI " + b"LIST" + struct.pack("<I", len(hdrl_body)) + hdrl_body
    body += b"LIST" + struct.pack("<I", len(movi_body)) + movi_body + _chunk(b"idx1", index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@contextmanager
def upload_bar(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress=`` callback drawing a rich progress bar on a terminal; None (no bar) otherwise."""
    try:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    except ImportError:  # the `progress` extra is not installed
        yield None
        return
    if not sys.stderr.isatty():
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"Uploading {label}", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
