"""Where outputs may be written, and how: the one place that decides, for every writer.

The rules (README › Output files):

* An output is a new path or an existing *regular file*, which is replaced. A folder, a
  device, a named pipe (FIFO) or a socket is refused with one sentence, never replaced.
* A symbolic link is followed, as the shell's ``>`` does: the file it points to is written
  and the link stays. That file is held to the same rules.
* An output may not be the same file as an input or as another output. "Same" is decided
  on the file itself (device and inode), so another spelling of the path, a symlink or a
  hard link to an input is refused as well; all of this before any work.
* The folder must be writable and an existing file must not be read-only; both are tried
  before any work.
* A file is written under a temporary name beside it and renamed into place, so a reader
  never sees half a file and a failed write (a full disk) leaves the old file, or nothing,
  and one sentence. A new file gets the mode the umask gives (like any other tool); a
  replaced file keeps its mode.

Temporary files and folders are registered while they exist, so that an interrupted
process can remove them on its way out (:func:`remove_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from ..errors import InputError

# Temporaries that exist now (files and folders), removed by remove_temporaries().
# A plain dict: adding and removing keys is atomic, so a signal handler may read it.
_TEMPORARIES: dict[str, None] = {}

_NODE_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def check_output_path(out_path: str | Path, example_name: str = "talk.mp4",
                      inputs: Iterable[str | Path | bytes | None] = ()) -> Path:
    """The path to write ``out_path`` to (a symlink's target), or InputError with one sentence.

    Creates missing folders; ``inputs`` are files the output must not be.
    """
    return check_outputs({example_name: out_path}, inputs)[example_name]


def check_outputs(outputs: Mapping[str, str | Path | None],
                  inputs: Iterable[str | Path | bytes | None] = ()) -> dict[str, Path]:
    """Check every output at once: none an input, no two the same file, each one writable.

    ``outputs`` maps an example file name (for the sentence about a folder, e.g.
    "scores.json") to the path given, or None when that output was not asked for. Returns
    the paths to write, by the same keys.
    """
    input_paths = [Path(p) for p in inputs if isinstance(p, (str, os.PathLike)) and str(p)]
    targets: dict[str, tuple[Path, Path, os.stat_result | None]] = {}
    for example_name, given in outputs.items():
        if given is None or str(given) == "":
            continue
        given = Path(given)
        target, info = _target_of(given, example_name)
        for source in input_paths:
            if _same_file(target, source):
                raise InputError(f"The output '{given}' is the input file '{source}'; writing it would destroy "
                                 "the input, so give the output another name.")
        for other_given, other, _ in targets.values():
            if _same_file(target, other):
                raise InputError(f"The outputs '{other_given}' and '{given}' are the same file; "
                                 "give each output a name of its own.")
        targets[example_name] = (given, target, info)
    for given, target, info in targets.values():
        _check_writable(given, target, info)
    return {name: target for name, (_, target, _) in targets.items()}


def _target_of(given: Path, example_name: str) -> tuple[Path, os.stat_result | None]:
    """Where ``given`` is written (a symlink's target) and what is there now (None: nothing)."""
    target = Path(os.path.realpath(given)) if given.is_symlink() else given
    try:
        info = os.stat(target) if os.path.lexists(target) else None
    except OSError as err:  # a symlink loop, a folder we may not enter, …
        raise InputError(f"The output '{given}' cannot be used ({_reason(err)}); choose another place.") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise InputError(f"The output '{given}' is a folder; give a file name such as '{given / example_name}'.")
    if info is not None and not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _NODE_KINDS if test(info.st_mode)), "not a regular file")
        raise InputError(f"The output '{given}' is {kind}, which PortraitTalk never replaces; "
                         "give the name of a new or an ordinary file.")
    return target, info


def _check_writable(given: Path, target: Path, info: os.stat_result | None) -> None:
    """Create the folder and try making a file in it; an existing file must not be read-only."""
    parent = target.parent
    for p in (parent, *parent.parents):
        if p.exists() and not p.is_dir():
            raise InputError(f"The output folder '{parent}' cannot be created because '{p}' is a file.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"The output folder '{parent}' cannot be created ({_reason(err)}); "
                         "choose another place.") from None
    if info is not None and not os.access(target, os.W_OK):
        raise InputError(f"The output '{given}' is read-only; make it writable or give another name.")
    try:  # the one sure test (permissions, a read-only file system, ACLs): make a file there
        discard(temporary_beside(target, ".writable-"))
    except OSError as err:
        raise InputError(f"The output folder '{parent}' cannot be written to ({_reason(err)}); "
                         "choose another place.") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where the paths lead
        return os.path.realpath(a) == os.path.realpath(b)


def _reason(err: OSError) -> str:
    return (err.strerror or str(err)).lower()


# -- writing --------------------------------------------------------------------------------

def temporary_beside(target: str | Path, prefix: str = ".partial-") -> Path:
    """A new empty file in ``target``'s folder, to be renamed onto ``target`` (:func:`publish`)
    or removed (:func:`discard`). Its mode is what ``target`` will need: the existing file's,
    or 0666 less the umask (the kernel applies the umask; nothing process-wide is changed)."""
    target = Path(target)
    path = target.parent / f"{prefix}{secrets.token_hex(4)}{target.suffix}"
    try:
        existing = os.stat(target)
        mode = stat.S_IMODE(existing.st_mode) if stat.S_ISREG(existing.st_mode) else None
    except OSError:
        mode = None
    _TEMPORARIES[str(path)] = None  # before the file exists, so an interrupt can never miss it
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except BaseException:
        _TEMPORARIES.pop(str(path), None)
        raise
    try:
        if mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return path


def publish(temporary: Path, target: str | Path) -> Path:
    """Move a finished temporary file onto ``target`` in one step (its data on disk first)."""
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)
    _TEMPORARIES.pop(str(temporary), None)
    return Path(target)


def discard(temporary: Path | None) -> None:
    """Remove a temporary file or folder (gone already is fine)."""
    if temporary is None:
        return
    if Path(temporary).is_dir():
        shutil.rmtree(temporary, ignore_errors=True)
    else:
        Path(temporary).unlink(missing_ok=True)
    _TEMPORARIES.pop(str(temporary), None)


@contextlib.contextmanager
def scratch_folder(parent: str | Path | None = None, prefix: str = "portraittalk-") -> Iterator[Path]:
    """A private temporary folder (in $TMPDIR by default), removed when the block ends."""
    folder = tempfile.mkdtemp(prefix=prefix, dir=parent)
    _TEMPORARIES[folder] = None
    try:
        yield Path(folder)
    finally:
        discard(Path(folder))


def write_file(target: str | Path, content: str | bytes) -> Path:
    """Write ``content`` (text as UTF-8) to ``target``: all of it in one rename, or nothing.

    A failed write (a full disk) leaves ``target`` as it was, removes the temporary file and
    raises InputError with one sentence."""
    target = Path(target)
    data = memoryview(content.encode("utf-8") if isinstance(content, str) else content)
    try:
        temporary = temporary_beside(target, f".{target.stem}.")
    except OSError as err:
        raise _write_failed(target, err) from None
    try:
        fd = os.open(temporary, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        publish(temporary, target)
    except OSError as err:
        discard(temporary)
        raise _write_failed(target, err) from None
    except BaseException:
        discard(temporary)
        raise
    return target


def _write_failed(target: Path, err: OSError) -> InputError:
    return InputError(f"Writing '{target}' failed ({_reason(err)}); nothing was changed there, so free some "
                      "space or choose another place and run again.")


def remove_temporaries() -> None:
    """Remove every temporary file and folder that still exists (for an interrupted process)."""
    for path in list(_TEMPORARIES):
        discard(Path(path))
