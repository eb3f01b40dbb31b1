"""The dream engine: networks and their layers, objectives, gradient ascent over octaves and
tiles, and the compile/precision accelerations. Works on batches of tensors; no files, no video."""
