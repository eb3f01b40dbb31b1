"""The `dream` command line: parses and checks arguments, then calls the library. Exit codes:
0 success, 2 bad input or usage, 1 internal failure. Nothing in the library imports it."""

from renderer.cli.main import main

__all__ = ["main"]
