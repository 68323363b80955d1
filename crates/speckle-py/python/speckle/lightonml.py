"""A lightonml-compatible ``OPU`` running on speckle's devices.

lightonml code runs on speckle's simulated OPU (with its camera noise) or on serial hardware by
changing one import::

    # from lightonml import OPU
    from speckle.lightonml import OPU

    with OPU(n_components=1000, max_n_features=784) as opu:
        opu.fit1d(X)                 # X: (n_samples, 784) array of 0/1
        Y = opu.transform(X)         # (n_samples, 1000) uint8 camera counts

The device is a speckle device SPEC: the ``device`` argument, else the ``SPECKLE_DEVICE``
environment variable, else ``sim``; likewise ``seed`` and ``SPECKLE_SEED`` (default 0).

Differences from lightonml:

* Input must be binary: every value is checked, and one other than 0 or 1 raises
  :class:`speckle.InputError` (a ``ValueError``) naming its position, where lightonml checks a
  sample and casts the rest. Any integer, bool or float dtype holding only 0 and 1 is accepted.
  ``linear_transform`` takes float input that float32 holds exactly; other values are an error,
  never rounded.
* ``transform`` returns the camera's counts (``uint8`` for the 8-bit ``sim`` preset, ``uint16``
  for 9 to 16 bits, ``float32`` for ``sim:ideal``) as a plain numpy array (no ``ContextArray``),
  or a torch tensor on the input tensor's device.
* The device is opened with ``max_n_features`` inputs and ``n_components`` outputs; inputs with
  fewer features leave the remaining mirrors dark, so successive ``fit`` calls with different
  feature counts share one medium. 2-D features are flattened row by row.
* ``linear_transform`` uses speckle's linear projector (interferometry with a reference pattern,
  ``encoding``), opened on first use; on a ``serial:`` device, switching between ``transform``
  and ``linear_transform`` reopens the link.
* ``online`` is accepted and has no effect; ``opu_device``, ``config_file``, ``config_override``,
  transform-setting overrides and input ROI strategies other than ``full`` are not supported
  (:class:`speckle.UnsupportedError`). Bit-packed input is ``numpy.packbits`` output (most
  significant bit first, lightonml's convention).
"""

import enum
import inspect
import os
from math import prod, sqrt
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import __version__, _speckle
from ._speckle import InputError, UnsupportedError

__all__ = ["OPU", "OutputRescaling"]


class OutputRescaling(enum.Enum):
    """Rescaling of ``linear_transform``'s output, as in lightonml."""

    #: Divide by sqrt(n_features): outputs of unit variance for inputs of unit norm per feature.
    variance = 1
    #: Divide by sqrt(n_components).
    norm = 2
    #: The projection x·P, P of unit-variance entries.
    none = 3


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise InputError(f"{name} must be an integer, got {type(value).__name__}")
    value = value.__index__()
    if value < 1:
        raise InputError(f"{name} must be at least 1, got {value}")
    return value


def _is_tensor(x: Any) -> bool:
    t = type(x)
    return t.__name__ == "Tensor" and t.__module__.split(".")[0] == "torch"


def _to_numpy(x: Any) -> Tuple[np.ndarray, Any]:
    """The input as a numpy array, and the torch tensor it came from (or None)."""
    if _is_tensor(x):
        try:
            return x.detach().cpu().numpy(), x
        except TypeError as e:  # e.g. bfloat16, which numpy lacks
            raise InputError(f"x: torch dtype {x.dtype} has no numpy equivalent ({e})") from None
    if isinstance(x, np.ndarray):
        return x, None
    if isinstance(x, (list, tuple)):
        return np.asarray(x), None  # as lightonml; the values are checked like any array's
    raise InputError(f"x must be a numpy array or a torch tensor, got {type(x).__name__}")


def _like_input(y: np.ndarray, tensor: Any) -> Any:
    if tensor is None:
        return y
    import torch

    out = torch.from_numpy(y)
    return out if tensor.device.type == "cpu" else out.to(tensor.device)


def _first_bad(x: np.ndarray, bad: np.ndarray) -> str:
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"value {x[index]} at index {index}"


def _binary(x: np.ndarray) -> np.ndarray:
    """x as uint8/bool 0/1 values, converted without loss; other values are an error."""
    if x.dtype == np.uint8 or x.dtype == np.bool_:
        return x  # checked by the device, which names the first bad value
    if x.dtype.kind not in "biuf":
        raise InputError(f"x has dtype {x.dtype}; transform needs binary values 0/1")
    bad = (x != 0) & (x != 1)
    if bad.any():
        raise InputError(f"input is not binary: {_first_bad(x, bad)}")
    return x.astype(np.uint8)


def _float32(x: np.ndarray) -> np.ndarray:
    """x as float32, converted only when float32 holds every value exactly."""
    if x.dtype == np.float32:
        return x
    if x.dtype.kind not in "biuf":
        raise InputError(f"x has dtype {x.dtype}; linear_transform needs real values")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            raise InputError(f"input is not finite: {_first_bad(x, bad)}")
    y = x.astype(np.float32)
    lossy = y.astype(x.dtype) != x
    if lossy.any():
        raise InputError(
            f"x has dtype {x.dtype} with values float32 cannot hold exactly "
            f"(first: {_first_bad(x, lossy)}); convert explicitly, e.g. x.astype(numpy.float32)"
        )
    return y


class _Traits:
    """What ``fit1d``/``fit2d`` fixed: the feature shape and whether input is bit-packed."""

    def __init__(self, n_features: Tuple[int, ...], packed: bool):
        self.n_features = n_features
        self.packed = packed

    @property
    def n_features_s(self) -> int:
        return prod(self.n_features)

    @property
    def sample_ndim(self) -> int:
        """Trailing dimensions of one input vector."""
        return 2 if len(self.n_features) == 2 and not self.packed else 1

    def sample_shape(self) -> Tuple[int, ...]:
        if self.packed:
            return ((self.n_features_s + 7) // 8,)
        return self.n_features


class _DeviceView:
    """``OPU.device``: what lightonml code reads of its device."""

    def __init__(self, opu: "OPU"):
        self._opu = opu

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """The DMD's mirror grid (columns, rows) of a simulated device, as lightonml reports it;
        ``(max_input_dim,)`` for a device that reports no grid."""
        shape = _speckle._dmd_shape(self._opu._spec, self._opu._overrides)
        if shape is not None:
            return tuple(shape)
        return (self._opu._device_info()["max_input_dim"],)

    @property
    def active(self) -> bool:
        return self._opu._active

    @property
    def info(self) -> Dict[str, Any]:
        """The device as ``speckle info --json`` describes it."""
        return self._opu._device_info()

    @property
    def frametime_us(self) -> float:
        return self._opu._device_info()["frame_time_us"]

    @property
    def exposure_us(self) -> float:
        return self._opu._device_info()["exposure_us"]

    @property
    def output_shape_max(self) -> Tuple[int, ...]:
        return (self._opu._device_info()["max_output_dim"],)

    def __repr__(self) -> str:
        return f"<speckle device {self._opu._spec}>"


# noinspection PyPep8Naming
class OPU:
    """lightonml's ``OPU`` on a speckle device: ``transform`` gives ``|x·R|²`` camera counts,
    ``linear_transform`` the linear projection ``x·P``.

    Parameters as lightonml's; speckle's own are keyword-only: ``device`` (a device SPEC),
    ``seed``, ``overrides`` (config overrides, as ``speckle.open_device``) and ``encoding``
    (of ``linear_transform``'s float input, as ``speckle.open_projector``).
    """

    def __init__(
        self,
        n_components: int = 200000,
        opu_device: Any = None,
        max_n_features: int = 1000,
        config_file: str = "",
        config_override: Optional[dict] = None,
        verbose_level: int = -1,
        input_roi_strategy: Any = None,
        open_at_init: Optional[bool] = None,
        disable_pbar: bool = False,
        simulated: bool = False,
        rescale: Union[OutputRescaling, str] = OutputRescaling.variance,
        *,
        device: Optional[str] = None,
        seed: Optional[int] = None,
        overrides: Any = None,
        encoding: str = "ternary",
    ):
        if opu_device is not None:
            raise UnsupportedError(
                "opu_device: speckle opens its own device from a device SPEC; pass device='sim' or device='serial:PATH'"
            )
        if config_file or config_override:
            raise UnsupportedError(
                "config_file/config_override: lightonml configs do not apply; pass overrides={'camera.bits': 10} (speckle device config keys)"
            )
        if input_roi_strategy is not None and getattr(input_roi_strategy, "name", input_roi_strategy) != "full":
            raise UnsupportedError(
                f"input_roi_strategy {input_roi_strategy!r}: speckle places features itself (only 'full' is accepted)"
            )
        if device is None:
            device = os.environ.get("SPECKLE_DEVICE", "sim")
        if seed is None:
            text = os.environ.get("SPECKLE_SEED", "0")
            try:
                seed = int(text)
            except ValueError:
                raise InputError(f"SPECKLE_SEED={text!r} is not an integer") from None
        del verbose_level, disable_pbar, simulated  # no progress bars; every device is speckle's
        self._spec = device
        self._seed = seed
        self._overrides = overrides
        self._encoding = encoding
        self._n_components = _positive_int(n_components, "n_components")
        self._max_n_features = _positive_int(max_n_features, "max_n_features")
        self.rescale = rescale
        self._raw: Optional[_speckle.Device] = None
        self._linear: Optional[_speckle.Projector] = None
        self._traits: Optional[_Traits] = None
        self._online = False
        self._active = False
        self._active_before_enter = False
        # Check the SPEC, seed and overrides now, not at the first transform.
        _speckle._dmd_shape(self._spec, self._overrides)
        if open_at_init is None or open_at_init:
            self.open()

    # --- settings -------------------------------------------------------------------------

    @property
    def n_components(self) -> int:
        """Output dimension (camera pixels kept, or projection outputs)."""
        return self._n_components

    @n_components.setter
    def n_components(self, value: int) -> None:
        value = _positive_int(value, "n_components")
        if value != self._n_components:
            self._release()
            self._n_components = value

    @property
    def max_n_features(self) -> int:
        """Input features the device is opened with; fitted inputs may have fewer."""
        return self._max_n_features

    @max_n_features.setter
    def max_n_features(self, value: int) -> None:
        value = _positive_int(value, "max_n_features")
        if self._traits is not None and self._traits.n_features_s > value:
            raise InputError(
                f"max_n_features {value} is below the {self._traits.n_features_s} features fitted"
            )
        if value != self._max_n_features:
            self._release()
            self._max_n_features = value

    @property
    def rescale(self) -> OutputRescaling:
        return self._rescale

    @rescale.setter
    def rescale(self, value: Union[OutputRescaling, str]) -> None:
        if isinstance(value, OutputRescaling):
            self._rescale = value
            return
        name = getattr(value, "name", value)
        try:
            self._rescale = OutputRescaling[str(name).lower()]
        except KeyError:
            raise InputError(
                f"rescale {value!r}: expected one of variance, norm, none"
            ) from None

    @property
    def device(self) -> _DeviceView:
        return _DeviceView(self)

    @property
    def spec(self) -> str:
        """The speckle device SPEC."""
        return self._spec

    def version(self, devices: bool = False) -> str:
        lines = [f"speckle version {__version__} (lightonml-compatible facade)"]
        if devices:
            lines.append(f"device {self._spec}: {self._device_info()['description']}")
        return "\n".join(lines)

    # --- resources ------------------------------------------------------------------------

    def open(self) -> None:
        """Makes the OPU usable; the device itself is opened on first use."""
        self._active = True

    def close(self) -> None:
        """Releases the device (a serial port is closed)."""
        self._release()
        self._active = False

    def __enter__(self) -> "OPU":
        self._active_before_enter = self._active
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        # As lightonml: an OPU that was open before `with` stays open after it.
        if not self._active_before_enter:
            self.close()

    def _release(self) -> None:
        for native in (self._raw, self._linear):
            if native is not None:
                native.close()
        self._raw = None
        self._linear = None

    def _serial(self) -> bool:
        return self._spec.startswith("serial:")

    def _raw_device(self) -> _speckle.Device:
        self._check_active()
        if self._raw is None:
            if self._serial() and self._linear is not None:
                self._linear.close()  # one session on the port at a time
                self._linear = None
            self._raw = _speckle.open_device(
                self._spec, self._max_n_features, self._n_components, self._seed, self._overrides
            )
        return self._raw

    def _projector(self) -> _speckle.Projector:
        self._check_active()
        if self._linear is None:
            if self._serial() and self._raw is not None:
                self._raw.close()
                self._raw = None
            self._linear = _speckle.open_projector(
                self._spec,
                self._max_n_features,
                self._n_components,
                self._seed,
                self._encoding,
                self._overrides,
            )
        return self._linear

    def _device_info(self) -> Dict[str, Any]:
        if self._raw is not None:
            return self._raw.info
        if self._spec == "digital":
            raise UnsupportedError("digital is a linear-only projector: it has no raw device to describe")
        was_active = self._active
        self._active = True
        try:
            return self._raw_device().info
        finally:
            self._active = was_active

    def _check_active(self) -> None:
        if not self._active:
            raise InputError('the OPU is closed: use opu.open() or "with opu:"')

    # --- fitting --------------------------------------------------------------------------

    def _no_override(self, override: Dict[str, Any]) -> None:
        if override:
            raise UnsupportedError(
                f"transform setting overrides {sorted(override)} are not supported by speckle"
            )

    def _fit(self, X: Any, n_features: Any, packed: bool, online: bool, is_2d: bool) -> None:
        if X is not None:
            x, _ = _to_numpy(X)
            if is_2d and not packed:
                if x.ndim < 2:
                    raise InputError(f"x has shape {x.shape}: 2-D features need at least 2 dimensions")
                shape: Tuple[int, ...] = tuple(int(d) for d in x.shape[-2:])
            elif is_2d:
                if n_features is None:
                    raise InputError("packed 2-D input needs n_features (n_2d_features): the (rows, cols) of each vector")
                shape = self._shape_2d(n_features)
            else:
                if x.ndim < 1:
                    raise InputError("x is a scalar: expected a vector or a batch of vectors")
                if packed and n_features is not None:
                    shape = (_positive_int(n_features, "n_features"),)
                else:
                    shape = (int(x.shape[-1]) * (8 if packed else 1),)
        else:
            if n_features is None:
                raise InputError("either X or n_features must be given")
            shape = self._shape_2d(n_features) if is_2d else (_positive_int(n_features, "n_features"),)
        traits = _Traits(shape, bool(packed))
        if traits.n_features_s > self._max_n_features:
            raise InputError(
                f"input has {traits.n_features_s} features but the OPU was opened with max_n_features={self._max_n_features}"
            )
        if traits.n_features_s < 1:
            raise InputError(f"input has no features (shape {shape})")
        self._traits = traits
        self._online = bool(online)

    @staticmethod
    def _shape_2d(n_features: Any) -> Tuple[int, int]:
        if isinstance(n_features, (str, bytes)) or not isinstance(n_features, (Sequence, np.ndarray)) or len(n_features) != 2:
            raise InputError(f"2-D n_features must be (rows, cols), got {n_features!r}")
        return (_positive_int(n_features[0], "n_features[0]"), _positive_int(n_features[1], "n_features[1]"))

    def fit1d(self, X: Any = None, n_features: Optional[int] = None, packed: bool = False, online: bool = False, **override: Any) -> None:
        """Sets the transform up for 1-D vectors: from a batch ``X`` or from ``n_features``.
        ``packed``: vectors are ``numpy.packbits`` bytes (``n_features = 8 * X.shape[-1]``
        unless given)."""
        self._no_override(override)
        self._fit(X, n_features, packed, online, False)

    def fit2d(self, X: Any = None, n_features: Optional[Tuple[int, int]] = None, packed: bool = False, online: bool = False, **override: Any) -> None:
        """Sets the transform up for 2-D vectors (images): from a batch ``X`` (the last two
        dimensions) or from ``n_features = (rows, cols)``, which packed input needs."""
        self._no_override(override)
        self._fit(X, n_features, packed, online, True)

    # --- transforms -----------------------------------------------------------------------

    def _rows(self, x: np.ndarray) -> Tuple[np.ndarray, Tuple[int, ...]]:
        """The input as (rows, n_features) unpacked, and the leading (batch) shape."""
        traits = self._traits
        if traits is None:
            raise InputError("call fit1d or fit2d before transform")
        sample = traits.sample_shape()
        k = len(sample)
        if x.ndim < k or tuple(x.shape[x.ndim - k:]) != sample:
            what = "bytes per packed vector" if traits.packed else "features"
            raise InputError(
                f"x has shape {tuple(x.shape)}; each vector must have shape {sample} ({what} fitted: {traits.n_features})"
            )
        lead = tuple(int(d) for d in x.shape[: x.ndim - k])
        rows = prod(lead)
        if traits.packed:
            if x.dtype != np.uint8:
                raise InputError(f"bit-packed input must be uint8, got {x.dtype}")
            flat = np.unpackbits(x.reshape(rows, sample[0]), axis=1, count=traits.n_features_s)
        else:
            flat = x.reshape(rows, traits.n_features_s)
        return flat, lead

    def _pad(self, flat: np.ndarray) -> np.ndarray:
        n = flat.shape[1]
        if n == self._max_n_features:
            return flat
        padded = np.zeros((flat.shape[0], self._max_n_features), dtype=flat.dtype)
        padded[:, :n] = flat
        return padded

    def _encoded(self, X: Any, encoder_cls: Any) -> Tuple[np.ndarray, Any, Any]:
        encoder = None
        if encoder_cls is not None:
            encoder = encoder_cls() if inspect.isclass(encoder_cls) else encoder_cls
            X = encoder.transform(X)
        x, tensor = _to_numpy(X)
        return x, tensor, encoder

    @staticmethod
    def _decoded(y: Any, encoder: Any, decoder_cls: Any) -> Any:
        if decoder_cls is None:
            return y
        if inspect.isclass(decoder_cls):
            params = encoder.get_params() if encoder is not None and hasattr(encoder, "get_params") else {}
            decoder = decoder_cls(**params)
        else:
            decoder = decoder_cls
        return decoder.transform(y)

    def transform(self, X: Any, encoder_cls: Any = None, decoder_cls: Any = None) -> Any:
        """Camera counts ``|x·R|²`` of each vector of ``X`` (after ``fit1d``/``fit2d``), shape
        ``X``'s batch shape + ``(n_components,)``; numpy in, numpy out; torch in, torch out."""
        x, tensor, encoder = self._encoded(X, encoder_cls)
        if self._traits is not None and not self._traits.packed:
            x = _binary(x)
        flat, lead = self._rows(x)
        flat = self._pad(flat)
        try:
            y = self._raw_device().transform(flat)
        except InputError as e:
            if str(e).startswith("input is not binary"):
                bad = x.view(np.uint8) > 1 if x.dtype == np.bool_ else x > 1
                if bad.any():
                    raise InputError(f"input is not binary: {_first_bad(x, bad)}") from None
            raise
        y = y.reshape(lead + (self._n_components,))
        y = self._decoded(y, encoder, decoder_cls)
        return _like_input(y, tensor)

    def linear_transform(self, X: Any, encoder_cls: Any = None, decoder_cls: Any = None) -> Any:
        """The linear projection ``x·P`` of each vector of ``X`` (float values that float32 holds
        exactly), rescaled as ``rescale`` says; float32, shape ``X``'s batch shape +
        ``(n_components,)``."""
        if self._traits is not None and self._traits.packed:
            raise UnsupportedError("linear_transform does not take bit-packed input")
        x, tensor, encoder = self._encoded(X, encoder_cls)
        flat, lead = self._rows(_float32(x))
        flat = self._pad(flat)
        projector = self._projector()
        y = projector.project(np.ascontiguousarray(flat))
        variance = projector.info["entry_variance"]
        if self._rescale is OutputRescaling.variance:
            y /= np.float32(sqrt(variance * self._traits.n_features_s))
        elif self._rescale is OutputRescaling.norm:
            y /= np.float32(sqrt(variance * self._n_components))
        elif variance != 1.0:
            y /= np.float32(sqrt(variance))
        y = y.reshape(lead + (self._n_components,))
        y = self._decoded(y, encoder, decoder_cls)
        return _like_input(y, tensor)

    def fit_transform1d(self, X: Any, packed: bool = False, **override: Any) -> Any:
        """``fit1d(X, packed=packed)`` then ``transform(X)``."""
        self.fit1d(X, None, packed, False, **override)
        return self.transform(X)

    def fit_transform2d(self, X: Any, packed: bool = False, n_2d_features: Optional[Tuple[int, int]] = None, **override: Any) -> Any:
        """``fit2d(X, n_2d_features, packed)`` then ``transform(X)``."""
        self.fit2d(X, n_2d_features, packed, False, **override)
        return self.transform(X)

    def __repr__(self) -> str:
        return (
            f"speckle.lightonml.OPU(n_components={self._n_components}, max_n_features={self._max_n_features}, "
            f"device='{self._spec}', seed={self._seed})"
        )
