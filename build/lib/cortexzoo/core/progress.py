"""Progress reporting: bars on a terminal, sparse log lines otherwise."""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("cortexzoo")


def interactive() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A tqdm bar on a terminal; otherwise a log line every `log_every` seconds and at the end."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", log_every: float = 30.0,
                 enabled: bool = True):
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self._t0 = self._last = time.monotonic()
        self._log_every = log_every
        self._bar = None
        self.enabled = enabled
        if enabled and interactive():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
        elif self.enabled:
            now = time.monotonic()
            if now - self._last >= self._log_every:
                self._last = now
                log.info("%s: %d/%s %s%s", self.desc, self.n, self.total or "?", self.unit,
                         f" ({postfix})" if postfix else "")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self.enabled:
            dt = time.monotonic() - self._t0
            log.info("%s: %d %s in %.1f s", self.desc, self.n, self.unit, dt)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
