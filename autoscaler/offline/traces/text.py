"""Reading a trace file and parsing its fields, with errors that name the file and line.

Shared by the format loaders: :func:`read_text` opens plain files and single-file tar
archives (the public datasets ship compressed), :func:`first_data_line` is what format
detection looks at, and the parsers turn one CSV field into a number or a Unix time or
raise :class:`~autoscaler.offline.traces.TraceFormatError` pointing at the bad line.
"""

from __future__ import annotations

import csv
import io
import math
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from autoscaler.offline.traces.errors import TraceFormatError


def read_text(path: Path) -> tuple[str, str]:
    """Read a text file, or the single file inside a tar archive.

    Args:
        path: a file.

    Returns:
        The decoded text and the label used in error messages.

    Raises:
        TraceFormatError: if an archive does not hold exactly one file, or the content
            is not UTF-8.
    """
    label = str(path)
    if not path.is_file():  # a device or a FIFO would be read forever (or block on open)
        raise TraceFormatError(label, "not a regular file")
    if tarfile.is_tarfile(path):
        files: list[tuple[str, bytes]] = []
        # Stream mode reads a compressed archive once instead of seeking back through it.
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                stream = archive.extractfile(member) if member.isfile() else None
                if stream is not None:
                    files.append((member.name, stream.read()))
        if len(files) != 1:
            raise TraceFormatError(label, f"archive must hold exactly one file, has {len(files)}")
        label = f"{path}::{files[0][0]}"
        data = files[0][1]
    else:
        data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), label
    except UnicodeDecodeError as exc:
        raise TraceFormatError(label, f"not UTF-8 text ({exc.reason})") from exc


def first_data_line(text: str) -> str:
    """The first line that is neither blank nor a ``#`` comment, stripped.

    Args:
        text: file content.

    Returns:
        The line, or ``""`` if there is none.
    """
    for line in io.StringIO(text):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped
    return ""


def csv_rows(text: str, *, label: str) -> Iterator[tuple[int, list[str]]]:
    """Yield the data rows of a CSV with a header, checking the column count.

    Args:
        text: file content; its first line is the header.
        label: file label for errors.

    Yields:
        (line number, fields) for every non-blank row after the header.

    Raises:
        TraceFormatError: if a row has another number of fields than the header.
    """
    reader = csv.reader(io.StringIO(text))
    header = next((row for row in reader if row), [])
    for row in reader:
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(header):
            raise TraceFormatError(
                label, f"expected {len(header)} comma-separated fields, got {len(row)}", line=reader.line_num
            )
        yield reader.line_num, row


def parse_number(field: str, *, label: str, line: int, what: str) -> float:
    """Parse one finite float from a CSV field.

    Args:
        field: the text.
        label: file label for errors.
        line: line number for errors.
        what: column description for errors.

    Returns:
        The number.

    Raises:
        TraceFormatError: if the field is not a finite number.
    """
    try:
        value = float(field)
    except ValueError:
        raise TraceFormatError(label, f"{what}: not a number: {field!r}", line=line) from None
    if not math.isfinite(value):
        raise TraceFormatError(label, f"{what}: must be finite, got {field!r}", line=line)
    return value


def parse_datetime(field: str, *, label: str, line: int) -> float:
    """Parse an ISO-like date-time; without a zone it is read as UTC.

    Args:
        field: e.g. ``2023-11-16 18:17:03.9799600``.
        label: file label for errors.
        line: line number for errors.

    Returns:
        Unix seconds.

    Raises:
        TraceFormatError: if the field is not a date-time.
    """
    try:
        moment = datetime.fromisoformat(field.strip())
    except ValueError:
        raise TraceFormatError(label, f"not a date-time: {field!r}", line=line) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
