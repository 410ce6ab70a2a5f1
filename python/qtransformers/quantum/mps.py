"""Matrix product states (tensor trains) built by TT-SVD with faer's SVD in the Rust core.

Sites follow the axes of ``array.reshape(dims)`` in C order: site 0 is the slowest axis. A 1-D
array of length 2^n becomes n sites of dimension 2, so site k holds bit n-1-k of the index (qubit
n-1-k in the little-endian convention of :mod:`qtransformers.quantum.channels`).

Truncation at every cut keeps the singular values ``s_i > cutoff * s_max`` and at most
``max_bond`` of them. :attr:`MPS.truncation_error` is sqrt(sum of all discarded s_i^2), a bound
on ``|A - A_mps|_F`` (Oseledets 2011, Thm 2.2) that is tight for a single cut. Because TT-SVD
(and :meth:`MPS.compress`) sweep with orthonormal factors, the discarded parts are mutually
orthogonal and the bound is in fact attained up to rounding by :meth:`MPS.from_dense`; after
:meth:`MPS.compress` the errors of the two steps are added (triangle inequality), so it stays
a bound on the distance to the original array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from qtransformers import _core
from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError


class MPS:
    """A tensor train of cores (r_k, d_k, r_{k+1}) representing an array of shape ``shape``."""

    def __init__(self, cores: Sequence[np.ndarray], shape: Sequence[int], truncation_error: float = 0.0) -> None:
        self.cores = [np.asarray(c) for c in cores]
        self.shape = tuple(int(s) for s in shape)
        self.truncation_error = float(truncation_error)
        if math.prod(self.shape) != math.prod(self.dims):
            raise ShapeError(f"shape {self.shape} does not match the site dimensions {self.dims}")

    @classmethod
    def from_dense(
        cls, array, max_bond: int | None = None, cutoff: float = 0.0, dims: Sequence[int] | None = None
    ) -> MPS:
        """TT-SVD of ``array`` (numpy or torch; real -> float64 cores, complex -> complex128).

        ``dims`` defaults to [2] * n for a 1-D array of length 2^n and to ``array.shape`` otherwise.
        """
        arr = _to_numpy(array)
        if dims is None:
            if arr.ndim == 1:
                size = arr.shape[0]
                if size < 2 or size & (size - 1):
                    raise ShapeError(f"a 1-D array of length {size} is not 2^n sites of dimension 2; pass dims=[...]")
                dims = [2] * (size.bit_length() - 1)
            else:
                dims = list(arr.shape)
        dims = [int(d) for d in dims]
        if max_bond is not None and (not isinstance(max_bond, (int, np.integer)) or max_bond < 1):
            raise InvalidArgumentError(f"max_bond must be None or an int >= 1, got {max_bond!r}")
        cores, err = _core.tt_svd(np.ascontiguousarray(arr.reshape(-1)), dims, max_bond, float(cutoff))
        return cls(cores, arr.shape, err)

    @property
    def dims(self) -> tuple[int, ...]:
        """Physical dimension of each site."""
        return tuple(c.shape[1] for c in self.cores)

    @property
    def num_sites(self) -> int:
        """Number of sites n."""
        return len(self.cores)

    @property
    def bond_dims(self) -> tuple[int, ...]:
        """The n - 1 inner bond dimensions r_1 .. r_{n-1}."""
        return tuple(c.shape[2] for c in self.cores[:-1])

    @property
    def dtype(self) -> np.dtype:
        """float64 or complex128."""
        return self.cores[0].dtype

    @property
    def nbytes(self) -> int:
        """Bytes held by the cores."""
        return sum(c.nbytes for c in self.cores)

    @property
    def dense_nbytes(self) -> int:
        """Bytes of the dense array in the same dtype as the cores."""
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def compression_ratio(self) -> float:
        """dense_nbytes / nbytes (same dtype on both sides; < 1 means the MPS is larger)."""
        return self.dense_nbytes / self.nbytes

    def to_dense(self) -> np.ndarray:
        """The represented array, in the original shape (float64 or complex128)."""
        return _core.mps_to_dense(self.cores).reshape(self.shape)

    def inner(self, other: MPS) -> complex:
        """<self|other> = sum conj(self) * other, without forming either dense array."""
        if not isinstance(other, MPS):
            raise DTypeError(f"inner expects an MPS, got {type(other).__name__}")
        if self.dims != other.dims:
            raise ShapeError(f"inner product needs equal site dimensions, got {self.dims} and {other.dims}")
        a, b = self.cores, other.cores
        if a[0].dtype != b[0].dtype:
            a, b = [c.astype(np.complex128) for c in a], [c.astype(np.complex128) for c in b]
        re, im = _core.mps_inner(a, b)
        return complex(re, im)

    def norm(self) -> float:
        """Frobenius norm of the represented array."""
        return math.sqrt(max(self.inner(self).real, 0.0))

    def compress(self, max_bond: int | None = None, cutoff: float = 0.0) -> MPS:
        """A recompressed copy (QR sweep, then truncated SVD sweep); its error bound adds this step's."""
        if max_bond is not None and (not isinstance(max_bond, (int, np.integer)) or max_bond < 1):
            raise InvalidArgumentError(f"max_bond must be None or an int >= 1, got {max_bond!r}")
        cores, err = _core.mps_compress(self.cores, self.truncation_error, max_bond, float(cutoff))
        return MPS(cores, self.shape, err)

    def __repr__(self) -> str:
        return (
            f"MPS(shape={self.shape}, dims={self.dims}, bond_dims={self.bond_dims}, "
            f"truncation_error={self.truncation_error:.3g}, compression_ratio={self.compression_ratio:.3g})"
        )


def _to_numpy(array) -> np.ndarray:
    """float64 or complex128 numpy copy/view of a numpy array or torch tensor."""
    if isinstance(array, torch.Tensor):
        array = array.detach().to("cpu").resolve_conj()
        array = array.double() if not (array.is_complex() or array.is_floating_point()) else array
        array = array.numpy()
    arr = np.asarray(array)
    if arr.dtype == object or arr.ndim == 0:
        raise ShapeError(f"from_dense needs an array with at least one axis, got {type(array).__name__}")
    dtype = np.complex128 if np.iscomplexobj(arr) else np.float64
    return arr.astype(dtype, copy=False)


def tt_svd_ref(
    array: np.ndarray, dims: Sequence[int], max_bond: int | None = None, cutoff: float = 0.0
) -> tuple[list[np.ndarray], float]:
    """Numpy reference of the Rust TT-SVD: (cores, truncation_error) with the same rank rule."""
    rest = np.asarray(array).reshape(1, -1)
    cores, discarded, r = [], 0.0, 1
    for d in dims[:-1]:
        u, s, vh = np.linalg.svd(rest.reshape(r * d, -1), full_matrices=False)
        keep = max(int(np.sum(s > cutoff * s[0])), 1)
        keep = min(keep, max_bond or keep)
        discarded += float(np.sum(s[keep:] ** 2))
        cores.append(u[:, :keep].reshape(r, d, keep))
        rest = s[:keep, None] * vh[:keep]
        r = keep
    cores.append(rest.reshape(r, dims[-1], 1))
    return cores, math.sqrt(discarded)
