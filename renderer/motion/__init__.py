"""Motion: optical flow and warping, the temporal carry of a dream from frame to frame, zoom
motion (keyframes, affine steps, colour hold) and the coherence measures. Imports the engine
(for the temporal anchor) and media (image conversion), never the render loops."""
