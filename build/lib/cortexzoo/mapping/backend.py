"""Array backends (himalaya-style): the solvers run unchanged on numpy or torch.

A backend is a small object with the handful of array operations the solvers
need. ``get_backend("numpy")`` runs on numpy/scipy (LAPACK via scipy);
``get_backend("torch", device="cpu"|"cuda")`` runs on torch, which on CPU is
often much faster than numpy here because torch multithreads its elementwise
kernels as well as its matrix products.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Backend", "NumpyBackend", "TorchBackend", "get_backend"]

_DTYPES = ("float64", "float32")


class BackendError(ValueError):
    """Unknown backend, dtype or device."""


class Backend:
    """Interface of an array backend; see NumpyBackend and TorchBackend."""

    name: str = "abstract"
    dtype: str = "float64"

    def asarray(self, x: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def to_numpy(self, x: Any) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class NumpyBackend(Backend):
    """numpy + scipy.linalg."""

    name = "numpy"

    def __init__(self, dtype: str = "float64") -> None:
        if dtype not in _DTYPES:
            raise BackendError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        self.dtype = dtype
        self._np_dtype = np.dtype(dtype)

    # creation / conversion
    def asarray(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=self._np_dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=self._np_dtype)

    def full(self, shape: tuple[int, ...], value: float) -> np.ndarray:
        return np.full(shape, value, dtype=self._np_dtype)

    def zeros_int(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=np.int64)

    # linear algebra
    def svd_thin(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import scipy.linalg

        try:
            return scipy.linalg.svd(x, full_matrices=False, overwrite_a=True,
                                    check_finite=False, lapack_driver="gesdd")
        except np.linalg.LinAlgError:  # gesdd occasionally fails to converge
            return scipy.linalg.svd(x, full_matrices=False, check_finite=False,
                                    lapack_driver="gesvd")

    def eigh(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (ascending) and eigenvectors of a symmetric matrix (lower triangle).

        numpy's eigh (LAPACK syevd, divide and conquer) is several times faster here than
        scipy's default syevr driver for the full spectrum of a dense Gram matrix, and it
        runs on numpy's own BLAS threads, the ones the Gram matrix was just built with
        (scipy links a second OpenBLAS whose threads then compete with them).
        """
        return np.linalg.eigh(k)

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a @ b

    def matmul_to_host_(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out[...] = a @ b into a numpy array (no temporary)."""
        return np.matmul(a, b, out=out)

    def add_gram_(self, k: np.ndarray, xb: np.ndarray, tmp: np.ndarray | None) -> np.ndarray:
        """k += xb @ xb.T, through the scratch buffer tmp (same shape as k) if given
        (numpy's BLAS sees the transpose and computes one triangle: syrk)."""
        if tmp is None:
            k += xb @ xb.T
        else:
            np.matmul(xb, xb.T, out=tmp)
            k += tmp
        return k

    def finish_gram_(self, k: np.ndarray) -> np.ndarray:
        """Complete k after the last add_gram_ (nothing to do here)."""
        return k

    def shares_memory(self, a: Any, b: Any) -> bool:
        return isinstance(b, np.ndarray) and np.shares_memory(a, b)

    # elementwise / reductions
    def mean(self, x: np.ndarray, axis: int) -> np.ndarray:
        return x.mean(axis=axis)

    def sum(self, x: np.ndarray, axis: int) -> np.ndarray:
        return x.sum(axis=axis)

    def sqrt(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(x)

    def clip_min(self, x: np.ndarray, lo: float) -> np.ndarray:
        return np.maximum(x, lo)

    def where(self, cond: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(cond, a, b)

    def copy(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def rsub_(self, p: np.ndarray, y: np.ndarray) -> np.ndarray:
        """p = y - p in place (one pass)."""
        return np.subtract(y, p, out=p)

    def take_rows(self, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """x[idx] (contiguous row copies)."""
        return np.take(x, idx, axis=0)

    def transpose_copy(self, x: Any) -> np.ndarray:
        """A new C-contiguous array x.T in the backend's dtype (never a view of x)."""
        return np.array(np.asarray(x).T, dtype=self._np_dtype, order="C", copy=True)

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n)

    def isfinite_all(self, x: np.ndarray) -> bool:
        return bool(np.isfinite(x).all())


class TorchBackend(Backend):
    """torch on CPU or CUDA; same results as numpy up to floating-point rounding."""

    name = "torch"

    def __init__(self, dtype: str = "float64", device: str | None = None) -> None:
        import torch

        if dtype not in _DTYPES:
            raise BackendError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        self.torch = torch
        self.dtype = dtype
        self._t_dtype = getattr(torch, dtype)
        dev = device or "cpu"
        try:
            self.device = torch.device(dev)
        except (RuntimeError, TypeError) as exc:
            raise BackendError(f"unknown torch device {device!r}") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but CUDA is not available")

    def asarray(self, x: Any) -> Any:
        t = self.torch
        if isinstance(x, t.Tensor):
            return x.to(device=self.device, dtype=self._t_dtype)
        arr = np.asarray(x)
        # from_numpy shares memory when dtype already matches: no copy of X or Y
        if arr.dtype != np.dtype(self.dtype) or not arr.flags.writeable:
            arr = np.array(arr, dtype=self.dtype)
        return t.from_numpy(arr).to(self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, self.torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def zeros(self, shape: tuple[int, ...]) -> Any:
        return self.torch.zeros(shape, dtype=self._t_dtype, device=self.device)

    def full(self, shape: tuple[int, ...], value: float) -> Any:
        return self.torch.full(shape, value, dtype=self._t_dtype, device=self.device)

    def zeros_int(self, shape: tuple[int, ...]) -> Any:
        return self.torch.zeros(shape, dtype=self.torch.int64, device=self.device)

    def svd_thin(self, x: Any) -> tuple[Any, Any, Any]:
        u, s, vh = self.torch.linalg.svd(x, full_matrices=False)
        return u, s, vh

    def eigh(self, k: Any) -> tuple[Any, Any]:
        w, q = self.torch.linalg.eigh(k)
        return w, q

    def matmul(self, a: Any, b: Any) -> Any:
        return a @ b

    def matmul_to_host_(self, a: Any, b: Any, out: np.ndarray) -> np.ndarray:
        """out[...] = a @ b into a numpy array: written in place on the CPU, copied back
        from a GPU."""
        if self.device.type == "cpu" and out.flags.c_contiguous:
            self.torch.matmul(a, b, out=self.torch.from_numpy(out))
        else:
            out[...] = self.to_numpy(a @ b)
        return out

    def add_gram_(self, k: Any, xb: Any, tmp: Any | None) -> Any:
        """k += xb @ xb.T on the lower block triangle only; :meth:`finish_gram_` mirrors it.

        torch multiplies xb by its transpose as a general product (addmm), not a
        symmetric one (syrk); a block of rows times the rows up to its end, for eight
        blocks, does 56% of the flops (measured 40% less time on CPU at n = 1000-2000).
        """
        n = int(k.shape[0])
        rows = _gram_block_rows(n)
        if rows >= n:
            return k.addmm_(xb, xb.T)
        for i0 in range(0, n, rows):
            i1 = min(n, i0 + rows)
            k[i0:i1, :i1].addmm_(xb[i0:i1], xb[:i1].T)
        return k

    def finish_gram_(self, k: Any) -> Any:
        """Copy the blocks below the diagonal blocks that add_gram_ built onto those above."""
        n = int(k.shape[0])
        rows = _gram_block_rows(n)
        for i0 in range(rows, n, rows):
            i1 = min(n, i0 + rows)
            k[:i0, i0:i1].copy_(k[i0:i1, :i0].T)
        return k

    def shares_memory(self, a: Any, b: Any) -> bool:
        t = self.torch
        if isinstance(b, t.Tensor):
            return a.data_ptr() == b.data_ptr()
        if isinstance(b, np.ndarray) and a.device.type == "cpu":
            return a.data_ptr() == b.__array_interface__["data"][0]
        return False

    def mean(self, x: Any, axis: int) -> Any:
        return x.mean(dim=axis)

    def sum(self, x: Any, axis: int) -> Any:
        return x.sum(dim=axis)

    def sqrt(self, x: Any) -> Any:
        return self.torch.sqrt(x)

    def clip_min(self, x: Any, lo: float) -> Any:
        return self.torch.clamp(x, min=lo)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.torch.where(cond, a, b)

    def copy(self, x: Any) -> Any:
        return x.clone()

    def rsub_(self, p: Any, y: Any) -> Any:
        """p = y - p in place (one pass)."""
        return self.torch.sub(y, p, out=p)

    def take_rows(self, x: Any, idx: Any) -> Any:
        """x[idx] for an int64 index tensor (or numpy array) and a 2-D x."""
        if isinstance(idx, np.ndarray):
            idx = self.torch.as_tensor(idx, dtype=self.torch.int64, device=x.device)
        return self.torch.index_select(x, 0, idx)

    def transpose_copy(self, x: Any) -> Any:
        """A new contiguous tensor x.T in the backend's dtype (never a view of x)."""
        t = self.torch
        if not isinstance(x, t.Tensor):
            # transpose on the host in the source dtype, then one transfer
            return t.from_numpy(np.array(np.asarray(x).T, dtype=self.dtype, order="C",
                                         copy=True)).to(self.device)
        return x.T.to(device=self.device, dtype=self._t_dtype, copy=True,
                      memory_format=t.contiguous_format)

    def arange(self, n: int) -> Any:
        return self.torch.arange(n, device=self.device)

    def isfinite_all(self, x: Any) -> bool:
        return bool(self.torch.isfinite(x).all())


def _gram_block_rows(n: int) -> int:
    """Rows per block of torch's lower-triangle Gram products: an eighth of n, at least 64."""
    return max(64, -(-n // 8))


def get_backend(backend: str | Backend = "numpy", dtype: str = "float64",
                device: str | None = None) -> Backend:
    """Return a backend object by name ("numpy" or "torch")."""
    if isinstance(backend, Backend):
        return backend
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise BackendError(f"the numpy backend runs on the CPU only, got device={device!r}")
        return NumpyBackend(dtype)
    if backend == "torch":
        return TorchBackend(dtype, device)
    raise BackendError(f"backend must be 'numpy' or 'torch', got {backend!r}")


# ---- a few composite operations the solvers need, implemented per backend ----
def row_sqnorm(backend: Backend, x: Any) -> Any:
    """Sum of squares of each row."""
    if backend.name == "numpy":
        return np.einsum("ij,ij->i", x, x)
    return backend.torch.linalg.vector_norm(x, dim=1) ** 2


def row_dot(backend: Backend, a: Any, b: Any) -> Any:
    """Row-wise dot products sum_j a_ij b_ij."""
    if backend.name == "numpy":
        return np.einsum("ij,ij->i", a, b)
    return (a * b).sum(dim=1)
