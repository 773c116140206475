"""The engine's launch error, in a module that imports nothing: ``distributed.py``, ``sharding.py``,
``zero.py`` and ``parallel.py`` all raise it (or a subclass), so none imports another for it."""


class DistributedError(RuntimeError):
    """The launch asks for something this engine does not do; the message says what to use instead."""
