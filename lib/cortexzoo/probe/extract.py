"""Frozen features of a twin (paper 004 A.3): encoder outputs of single frames, the final
GRU hidden state of a clip, and the last chunk's final state of a long clip.

A *twin* here is anything with the :class:`cortexzoo.twins.model.Twin` surface: an
``encoder`` mapping frames ``[b, 1, H, W]`` to ``[b, D]`` and a batch-first ``gru``; the
readouts are never used. Inputs are numpy arrays of frames in ``[0, 1]`` (the twins'
normalized input range); outputs are float32 numpy arrays. Everything runs under
``torch.no_grad()`` in eval mode, in batches, on ``device``.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["FeatureExtractor", "default_device"]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class FeatureExtractor:
    """Batched frozen features of one twin; counts frames and forward-pass seconds."""

    def __init__(self, model: torch.nn.Module, hw: tuple[int, int], batch_size: int = 256,
                 device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.hw = (int(hw[0]), int(hw[1]))
        self.batch_size = int(batch_size)
        self.frames = 0
        self.seconds = 0.0

    def _check(self, x: np.ndarray, ndim: int, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != ndim or tuple(x.shape[-2:]) != self.hw:
            raise ValueError(f"{what} must be {'[n, h, w]' if ndim == 3 else '[n, T, h, w]'} "
                             f"at the twin's frame size {list(self.hw)}, got {list(x.shape)}")
        return x

    def _run(self, x: np.ndarray, fn: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
        out = []
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + self.batch_size]))
                out.append(fn(xb.to(self.device)).float().cpu().numpy())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - t0
        self.frames += int(np.prod(x.shape[:-2]))
        if not out:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(out)

    def encoder(self, images: Any) -> np.ndarray:
        """Encoder outputs ``[n, D]`` of single frames ``[n, h, w]``."""
        x = self._check(images, 3, "images")
        return self._run(x, lambda b: self.model.encoder(b[:, None]))

    def _frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        return self.model.encoder(clips.reshape(b * t, 1, *clips.shape[2:])).reshape(b, t, -1)

    def gru_final(self, clips: Any) -> np.ndarray:
        """Final GRU hidden state ``[n, H]`` of clips ``[n, L, h, w]`` (zero initial state)."""
        x = self._check(clips, 4, "clips")

        def fn(b: torch.Tensor) -> torch.Tensor:
            _, h = self.model.gru(self._frame_features(b))
            return h[-1]

        return self._run(x, fn)

    def gru_and_last_frame(self, clips: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(final GRU state [n, H], encoder output of the last frame [n, D])``."""
        x = self._check(clips, 4, "clips")

        def fn(b: torch.Tensor) -> torch.Tensor:
            f = self._frame_features(b)
            _, h = self.model.gru(f)
            return torch.cat([h[-1], f[:, -1]], dim=1)

        both = self._run(x, fn)
        hdim = self.model.gru.hidden_size
        return both[:, :hdim], both[:, hdim:]

    def chunked_final(self, clips: Any, chunk: int, carry: bool = False) -> np.ndarray:
        """The last chunk's final GRU state ``[n, H]`` of clips ``[n, T, h, w]`` cut into
        non-overlapping ``chunk``-frame chunks ending on the last frame. Chunks start
        from a zero state, so only the last one is computed; with ``carry`` the state
        runs through the chunks in turn (equal to running the GRU over them all)."""
        x = self._check(clips, 4, "clips")
        k = x.shape[1] // chunk
        if k < 1:
            raise ValueError(f"clips of {x.shape[1]} frames hold no {chunk}-frame chunk")
        if not carry:
            return self.gru_final(x[:, -chunk:])
        return self.gru_final(x[:, x.shape[1] - k * chunk:])
