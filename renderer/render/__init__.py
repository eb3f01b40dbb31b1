"""Rendering: the plan of a render (segments, parts), the lockstep video loop and the zoom
feedback loop, checkpoints, parked frames, frame sinks and the thread budget. Drives the engine,
motion and media; reports through a progress sink and never imports the CLI or the job queue."""
