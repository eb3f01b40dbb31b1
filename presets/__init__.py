"""Built-in presets, shipped inside the package as `renderer.builtin`."""
