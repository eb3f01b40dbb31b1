"""Music: listening to a song (librosa analysis, cached), the schedule that turns a preset's
`timeline:` and `react:` sections into per-frame values, and the `dream audio` plot. Imports
media (audio decoding) and the foundation."""
