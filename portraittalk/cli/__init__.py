"""Command line: render, evaluate, bench."""

from .main import main

__all__ = ["main"]
