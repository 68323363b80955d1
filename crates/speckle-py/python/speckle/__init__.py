"""speckle: optical random projections from Python.

Devices and projectors are opened from the same device SPECs as the ``speckle`` command line
(``sim``, ``sim:PRESET``, ``sim:PATH``, ``digital``, ``serial:PATH[@BAUD]``) with the same config
overrides::

    import numpy as np
    import speckle

    device = speckle.open_device("sim", 64, 256, seed=0)
    frames = device.transform(np.ones((8, 64), dtype=np.uint8))  # uint8 camera frames, 8 x 256

    projector = speckle.open_projector("sim", 64, 256, seed=0, encoding="ternary")
    y = projector.project(np.random.randn(8, 64).astype(np.float32))  # float32, 8 x 256

Every error is a :class:`SpeckleError` with the command line's one-line message:
:class:`InputError` (also a ``ValueError``) for bad arguments and arrays,
:class:`UnsupportedError` (also a ``ValueError``), :class:`DeviceError`, :class:`LinkError`
(also an ``OSError``) and :class:`LinkTimeoutError` (also a ``TimeoutError``).

``speckle.lightonml`` holds a lightonml-compatible ``OPU``; ``speckle.torch`` the PyTorch layer.
"""

from ._speckle import (
    LINEAR_CHUNK_ROWS,
    SPEC_GRAMMAR,
    Device,
    DeviceError,
    InputError,
    LinkError,
    LinkTimeoutError,
    Projector,
    SpeckleError,
    UnsupportedError,
    __version__,
    open_device,
    open_projector,
)

__all__ = [
    "LINEAR_CHUNK_ROWS",
    "SPEC_GRAMMAR",
    "Device",
    "DeviceError",
    "InputError",
    "LinkError",
    "LinkTimeoutError",
    "Projector",
    "SpeckleError",
    "UnsupportedError",
    "__version__",
    "open_device",
    "open_projector",
]
