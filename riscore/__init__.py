"""What both sides of the project need and neither owns: user-facing errors and value coercion.

methods/ (the model side) and benchmarks/ (the run side) both import this package; it imports neither, so
the model side never depends on the run side.
"""
