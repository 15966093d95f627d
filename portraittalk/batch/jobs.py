"""The JOBS file: one render per row (CSV or JSONL), read and checked before any work starts.

Problems with the file itself (unreadable, unknown columns, missing files, clashing ids) stop
the batch with one sentence. A bad setting value fails only its own row.
"""

from __future__ import annotations

import csv
import json
import re
import typing
import urllib.error
import urllib.request
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import InputError
from ..settings import RenderSettings
from .outputs import RESERVED_NAMES

INPUT_COLUMNS = ("id", "portrait", "audio", "references")
SETTING_TYPES = typing.get_type_hints(RenderSettings)
KNOWN_COLUMNS = frozenset(INPUT_COLUMNS) | {f.name for f in fields(RenderSettings)}
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
URL_PATTERN = re.compile(r"https?://", re.IGNORECASE)
DOWNLOAD_TIMEOUT_S = 60
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


@dataclass(frozen=True)
class Job:
    """One row of the JOBS file. ``settings`` is None and ``error`` says why when a value is bad."""

    id: str
    line: int  # where the row is in the JOBS file, for messages
    portrait: str  # absolute path or URL
    audio: str
    references: tuple[str, ...] = ()
    settings: RenderSettings | None = None
    error: str | None = None


def read_jobs(path: str | Path) -> list[Job]:
    """Every job in the file, or an InputError with one sentence about the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The JOBS file '{path}' does not exist; check the path.")
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise InputError(f"The JOBS file '{path.name}' must be a .csv or .jsonl file (one job per row).")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "it is not UTF-8 text"
        raise InputError(f"The JOBS file '{path.name}' cannot be read ({reason}); save it as UTF-8 text.") from None
    rows = _csv_rows(text, path.name) if path.suffix.lower() == ".csv" else _jsonl_rows(text, path.name)
    if not rows:
        raise InputError(f"The JOBS file '{path.name}' has no jobs; add one row per video.")
    unknown = sorted({name for _, row in rows for name in row} - KNOWN_COLUMNS)
    if unknown:
        raise InputError(
            f"The JOBS file '{path.name}' has unknown column(s) {', '.join(repr(u) for u in unknown)}; "
            f"use portrait, audio, id, references or a render setting ({', '.join(SETTING_TYPES)}).")
    jobs = [_job(number, line, row, path) for number, (line, row) in enumerate(rows, 1)]
    _check_ids(jobs, path.name)
    _check_files(jobs, path.name)
    return jobs


def read_input(source: str, label: str) -> bytes:
    """The bytes of a job's input file or URL, or an InputError that fails only this job."""
    if not URL_PATTERN.match(source):
        try:
            return Path(source).read_bytes()
        except OSError as err:
            raise InputError(f"The {label} file '{source}' cannot be read ({err.strerror}); check it.") from None
    try:
        with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise InputError(f"The {label} '{source}' could not be downloaded ({reason}); "
                         "check the address or download the file next to the JOBS file.") from None


def source_name(source: str) -> str:
    """The file name a source is reported under (its last path or URL segment)."""
    name = Path(source.split("?", 1)[0].rstrip("/")).name
    return name if name not in ("", ".", "..") else "input"


# -- parsing --------------------------------------------------------------------------------
def _csv_rows(text: str, name: str) -> list[tuple[int, dict]]:
    reader = csv.DictReader(text.splitlines(), skipinitialspace=True)
    if reader.fieldnames is None:
        return []
    reader.fieldnames = [c.strip() for c in reader.fieldnames]
    rows = []
    try:
        for row in reader:
            if None in row:
                raise InputError(f"Line {reader.line_num} of '{name}' has more values than the header has columns; "
                                 "quote values that contain commas.")
            if any(v not in (None, "") for v in row.values()):
                rows.append((reader.line_num, {k: v for k, v in row.items() if k}))
    except csv.Error as err:
        raise InputError(f"Line {reader.line_num} of '{name}' is not valid CSV ({err}); fix the quoting.") from None
    return rows


def _jsonl_rows(text: str, name: str) -> list[tuple[int, dict]]:
    rows = []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as err:
            raise InputError(f"Line {line} of '{name}' is not valid JSON ({err.msg}); "
                             "write one JSON object per line.") from None
        if not isinstance(row, dict):
            raise InputError(f"Line {line} of '{name}' is not a JSON object; write one object per line, "
                             'such as {"portrait": "face.jpg", "audio": "speech.wav"}.')
        rows.append((line, row))
    return rows


def _job(number: int, line: int, row: dict, jobs_file: Path) -> Job:
    where = f"Line {line} of '{jobs_file.name}'"
    job_id = str(row.get("id") or f"job-{number:04d}").strip()
    sources = {}
    for column in ("portrait", "audio"):
        value = row.get(column)
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{where} has no {column}; every job needs a portrait and an audio file.")
        sources[column] = _resolve(value.strip(), jobs_file)
    references = row.get("references") or ()
    if isinstance(references, str):
        references = [r for r in references.split(";") if r.strip()]
    if not isinstance(references, (list, tuple)) or not all(isinstance(r, str) for r in references):
        raise InputError(f"{where}: 'references' must be file names separated by ';' (a list in JSONL).")
    references = tuple(_resolve(r.strip(), jobs_file) for r in references)

    values = {k: v for k, v in row.items() if k in SETTING_TYPES and v not in (None, "")}
    transcript = values.get("transcript")
    if isinstance(transcript, str) and transcript.startswith("@"):
        transcript_file = Path(_resolve(transcript[1:], jobs_file))
        try:
            values["transcript"] = transcript_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            raise InputError(f"{where}: the transcript file '{transcript[1:]}' cannot be read "
                             "(paths are relative to the JOBS file's folder); check the path.") from None
    try:
        converted: dict[str, typing.Any] = {k: _convert(k, v) for k, v in values.items()}  # each as its field's type
        settings = RenderSettings(**converted).validated()
    except InputError as err:
        return Job(job_id, line, sources["portrait"], sources["audio"], references, None, str(err))
    return Job(job_id, line, sources["portrait"], sources["audio"], references, settings)


def _resolve(value: str, jobs_file: Path) -> str:
    if URL_PATTERN.match(value):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (jobs_file.parent / path).resolve())


def _convert(name: str, value: object) -> bool | int | float | str:
    """A CSV cell (text) or a JSON value, as the type the setting has."""
    kind = SETTING_TYPES[name]
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise InputError(f"The setting '{name}' must be true or false (got {value!r}).")
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(f"The setting '{name}' must be a number (got {value!r}).")
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"The setting '{name}' must be a number (got {value!r}).") from None
        if kind is int:
            if not number.is_integer():
                raise InputError(f"The setting '{name}' must be a whole number (got {value!r}).")
            return int(number)
        return number
    if not isinstance(value, (str, int, float)):
        raise InputError(f"The setting '{name}' must be text (got {value!r}).")
    return str(value)


def _check_ids(jobs: list[Job], name: str) -> None:
    seen: dict[str, int] = {}
    for job in jobs:
        if not ID_PATTERN.fullmatch(job.id) or job.id.lower() in RESERVED_NAMES:
            raise InputError(f"The id '{job.id}' on line {job.line} of '{name}' cannot be a folder name; "
                             "use up to 100 letters, digits, '.', '-' and '_' "
                             f"(and none of {', '.join(sorted(RESERVED_NAMES))}).")
        if job.id in seen:
            raise InputError(f"The id '{job.id}' is used on lines {seen[job.id]} and {job.line} of '{name}'; "
                             "every job needs its own id.")
        seen[job.id] = job.line


def _check_files(jobs: list[Job], name: str) -> None:
    missing = [(job, label, source) for job in jobs
               for label, source in (("portrait", job.portrait), ("audio", job.audio),
                                     *(("reference", r) for r in job.references))
               if not URL_PATTERN.match(source) and not Path(source).is_file()]
    if missing:
        job, label, source = missing[0]
        more = f" ({len(missing) - 1} more file(s) are missing too)" if len(missing) > 1 else ""
        raise InputError(f"The {label} file '{source}' on line {job.line} of '{name}' does not exist{more}; "
                         "paths are relative to the JOBS file's folder.")
