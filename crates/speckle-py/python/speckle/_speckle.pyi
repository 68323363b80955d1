"""Type stubs of the native module ``speckle._speckle`` (Rust, PyO3)."""

from types import TracebackType
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np
import numpy.typing as npt

__version__: str
SPEC_GRAMMAR: str
LINEAR_CHUNK_ROWS: int

Overrides = Union[None, Mapping[str, Any], Sequence[str]]

class SpeckleError(Exception):
    kind: str

class InputError(SpeckleError, ValueError): ...
class UnsupportedError(SpeckleError, ValueError): ...
class DeviceError(SpeckleError): ...
class LinkError(SpeckleError, OSError): ...
class LinkTimeoutError(LinkError, TimeoutError): ...

class Device:
    """A raw optical device: binary frames in, camera frames out."""

    @property
    def info(self) -> Dict[str, Any]: ...
    @property
    def input_dim(self) -> int: ...
    @property
    def output_dim(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def counters(self) -> Dict[str, Union[int, float]]: ...
    @property
    def closed(self) -> bool: ...
    def transform(self, x: npt.NDArray[Union[np.uint8, np.bool_]]) -> npt.NDArray[Any]: ...
    def seek_frame(self, index: int) -> None: ...
    def set_readout_window(self, pixels: Optional[int]) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Device": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Projector:
    """A linear random projector: float32 vectors in, x·P out."""

    @property
    def info(self) -> Dict[str, Any]: ...
    @property
    def input_dim(self) -> int: ...
    @property
    def output_dim(self) -> int: ...
    @property
    def counters(self) -> Dict[str, Union[int, float]]: ...
    @property
    def closed(self) -> bool: ...
    def project(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Projector": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

def open_device(
    spec: str,
    input_dim: int,
    output_dim: int,
    seed: int = 0,
    overrides: Overrides = None,
) -> Device: ...
def open_projector(
    spec: str,
    input_dim: int,
    output_dim: int,
    seed: int = 0,
    encoding: str = "ternary",
    overrides: Overrides = None,
) -> Projector:
    """A linear projector ``input_dim -> output_dim`` on ``spec``.

    ``encoding`` (optical SPECs; ignored by ``digital``), with its device frames per vector:
    ``ternary`` or ``ternary:T`` (threshold T relative to max |x|) 4; ``ternary:dither``
    (unbiased stochastic ternary) 4; ``bitplane:P`` (P bits per sign) 4P; ``levels:K``
    (K levels fitted to each vector, plus an offset measured at calibration) 2(K-1);
    ``levels:K:dither`` (unbiased rounding onto K levels) 2(K-1). A dithered encoding draws
    from ``seed`` and each vector's first device frame index.
    """
def _dmd_shape(spec: str, overrides: Overrides = None) -> Optional[Tuple[int, int]]: ...
