"""Live: a camera (or a file played as one) dreamed in real time and shown in a browser."""
