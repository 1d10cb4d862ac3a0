class UnsupportedError(RuntimeError):
    """Something recur does not do (a CUDA tensor, a dtype other than float32/float64, ...)."""
