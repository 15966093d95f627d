"""Where outputs go: a path is checked before any work, so a bad one fails at once."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def check_output_path(out_path: str | Path, example_name: str = "talk.mp4") -> Path:
    """A file can be written there, or one sentence says why not (nothing is overwritten but a file)."""
    out_path = Path(out_path)
    if out_path.is_dir():
        raise InputError(f"The output '{out_path}' is a folder; give a file name such as '{out_path / example_name}'.")
    parent = out_path.parent
    for p in (parent, *parent.parents):
        if p.exists() and not p.is_dir():
            raise InputError(f"The output folder '{parent}' cannot be created because '{p}' is a file.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"The output folder '{parent}' cannot be created ({err.strerror}); choose another place.") from None
    return out_path
