"""CLI commands for video and zoom renders (registered into the main parser)."""


def register(sub, add_common) -> None:
    """Filled in by the video and zoom stages."""
