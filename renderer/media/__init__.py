"""Media I/O: probing files, decoding video by container timestamps, encoding with ffmpeg, still
images. Knows nothing of dreaming; imports only the foundation (errors, presets, outputs)."""
