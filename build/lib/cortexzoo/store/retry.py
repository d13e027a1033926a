"""Retries for object-store calls: exponential backoff with jitter, bounded in tries and time.

Every read, write and listing of :class:`~cortexzoo.store.ResultStore` on a remote
store goes through :func:`call_with_retry`. Errors are sorted into four kinds
(:func:`classify`):

``transient``  5xx answers, throttling (``SlowDown``, 429), timeouts, dropped or
               refused connections, truncated or garbled answers: retried.
``auth``       403 / bad, missing or expired credentials: never retried.
``not_found``  404 (no such key or bucket): never retried (often a normal answer).
``permanent``  everything else (bad request, bad argument, local disk errors): never retried.

Errors of s3fs (botocore codes) and of gcsfs (``HttpError`` status, a bare "Forbidden"
``OSError`` for 403, google-auth credential errors) are both understood. gcsfs retries
each request itself (6 tries, about 30 s) before an error reaches this loop; s3fs's and
botocore's loops are turned off by the store instead, so on S3 every retry is counted here.

The policy comes from the environment unless given (:meth:`RetryPolicy.from_env`):

============================== ======= ==============================================
variable                       default meaning
============================== ======= ==============================================
``CORTEXZOO_S3_RETRIES``       8       retries after the first try (0: no retries)
``CORTEXZOO_S3_RETRY_BASE``    0.25    first backoff in seconds, doubled per retry
``CORTEXZOO_S3_RETRY_MAX``     20      cap on one backoff (seconds)
``CORTEXZOO_S3_RETRY_DEADLINE`` 180    cap on one operation, tries and sleeps (seconds)
============================== ======= ==============================================

The backoff before retry ``i`` (0-based) is ``min(max, base * 2**i)`` scaled by a
uniform factor in ``[1 - jitter/2, 1]`` ("equal jitter": many clients throttled at
once spread out, while the delay still grows exponentially).
"""
from __future__ import annotations

import errno
import logging
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

__all__ = ["RetryPolicy", "RetryStats", "StoreUnavailableError", "classify", "call_with_retry", "error_name",
           "TRANSIENT", "AUTH", "NOT_FOUND", "PERMANENT"]

log = logging.getLogger("cortexzoo")

TRANSIENT, AUTH, NOT_FOUND, PERMANENT = "transient", "auth", "not_found", "permanent"

T = TypeVar("T")

#: S3 error codes that say "try again later".
_TRANSIENT_CODES = {
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestLimitExceeded", "TooManyRequestsException", "TooManyRequests",
    "ProvisionedThroughputExceededException", "BandwidthLimitExceeded", "RequestTimeout",
    "RequestTimeoutException", "InternalError", "InternalFailure", "ServiceUnavailable",
    "OperationAborted", "PriorRequestNotComplete", "EC2ThrottledException",
}
#: S3 / STS error codes that mean the credentials or permissions are wrong.
_AUTH_CODES = {
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "ExpiredTokenException", "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled",
    "AccountProblem", "InvalidClientTokenId", "UnrecognizedClientException",
    "InvalidSecurity", "RequestExpired", "MissingSecurityHeader", "CredentialsNotSupported",
}
_NOT_FOUND_CODES = {"NoSuchBucket", "NoSuchKey", "NotFound", "404"}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# errnos that s3fs gives 5xx/throttling answers (EBUSY: 503/SlowDown, EREMOTEIO: 500)
# and that sockets give for dropped connections.
_TRANSIENT_ERRNO = {errno.EBUSY, getattr(errno, "EREMOTEIO", errno.EIO), errno.EAGAIN,
                    errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED, errno.ECONNREFUSED,
                    errno.EPIPE, errno.ENETUNREACH, errno.EHOSTUNREACH}


def _transient_types() -> tuple[type, ...]:
    import asyncio
    import http.client
    import socket

    types: list[type] = [ConnectionError, TimeoutError, socket.timeout, asyncio.TimeoutError,
                         http.client.IncompleteRead, http.client.RemoteDisconnected]
    try:
        from fsspec.exceptions import FSTimeoutError
        types.append(FSTimeoutError)
    except ImportError:  # pragma: no cover - fsspec is a dependency
        pass
    try:
        import botocore.exceptions as be
        from botocore.parsers import ResponseParserError

        types += [be.HTTPClientError, be.EndpointConnectionError, be.ConnectTimeoutError,
                  be.IncompleteReadError, ResponseParserError]
    except ImportError:  # without botocore there is no S3 either
        pass
    try:
        import aiohttp

        types += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
    except ImportError:
        pass
    try:  # gcsfs turns a 502 into requests' ProxyError (a ConnectionError)
        import requests.exceptions as rq

        types += [rq.ConnectionError, rq.Timeout, rq.ChunkedEncodingError]
    except ImportError:
        pass
    return tuple(types)


def _auth_types() -> tuple[type, ...]:
    types: list[type] = []
    try:
        import botocore.exceptions as be

        types += [be.NoCredentialsError, be.PartialCredentialsError]
    except ImportError:
        pass
    try:  # gcsfs: no default credentials, or a token that cannot be refreshed (gcsfs
        # has already retried the refresh itself)
        import google.auth.exceptions as ge

        types += [ge.DefaultCredentialsError, ge.RefreshError]
    except ImportError:
        pass
    return tuple(types)


def _permanent_types() -> tuple[type, ...]:
    # A certificate that does not verify will not verify on the next try either.
    try:
        import botocore.exceptions as be

        return (be.SSLError,)
    except ImportError:
        return ()


_TYPES: dict[str, tuple[type, ...]] = {}


def _types(kind: str) -> tuple[type, ...]:
    if not _TYPES:
        _TYPES.update(transient=_transient_types(), auth=_auth_types(),
                      permanent=_permanent_types())
    return _TYPES[kind]


def _client_error_info(exc: BaseException) -> tuple[str | None, int | None] | None:
    if type(exc).__name__ == "HttpError" and type(exc).__module__.startswith("gcsfs"):
        # gcsfs: the HTTP status (an int or its string) and no S3-style code
        try:
            return None, int(getattr(exc, "code", None))
        except (TypeError, ValueError):
            return None, None
    resp = getattr(exc, "response", None)
    if not isinstance(resp, Mapping):
        return None
    code = (resp.get("Error") or {}).get("Code")
    status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    try:
        status = int(status) if status is not None else None
    except (TypeError, ValueError):
        status = None
    return (str(code) if code is not None else None), status


def _chain(exc: BaseException, limit: int = 8):
    seen = set()
    while exc is not None and id(exc) not in seen and len(seen) < limit:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _gcs_forbidden(exc: BaseException) -> bool:
    # gcsfs answers a 403 with a bare OSError("Forbidden: <url>\n<message>")
    return type(exc) is OSError and exc.errno is None and str(exc).startswith("Forbidden: ")


def classify(exc: BaseException) -> str:
    """Sort an error into ``transient``, ``auth``, ``not_found`` or ``permanent``.

    The whole cause chain is looked at, because s3fs turns a botocore ``ClientError``
    into a plain ``OSError`` and keeps the original as ``__cause__``; the most
    specific answer (an S3 error code or HTTP status, or gcsfs's ``HttpError.code``)
    wins.
    """
    if isinstance(exc, StoreUnavailableError):
        return PERMANENT  # already retried as long as the policy allows: never again
    chain = list(_chain(exc))
    for e in chain:  # an S3 answer with a code is the most precise information
        info = _client_error_info(e)
        if info is None:
            continue
        code, status = info
        if code in _AUTH_CODES or status in (401, 403):
            return AUTH
        if code in _NOT_FOUND_CODES or status == 404:
            return NOT_FOUND
        if code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS or (status or 0) >= 500:
            return TRANSIENT
        return PERMANENT
    for e in chain:
        if isinstance(e, _types("permanent")):
            return PERMANENT
        if isinstance(e, _types("auth")) or isinstance(e, PermissionError) or _gcs_forbidden(e):
            return AUTH
        if isinstance(e, FileNotFoundError):
            return NOT_FOUND
        if isinstance(e, _types("transient")):
            return TRANSIENT
    e = chain[0] if chain else exc
    if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNO:
        return TRANSIENT
    return PERMANENT


def error_name(exc: BaseException) -> str:
    """A short name for counting errors: the S3 code or HTTP status, else the type."""
    for e in _chain(exc):
        info = _client_error_info(e)
        if info is not None:
            code, status = info
            return code or str(status)
    return type(exc).__name__


def _env_number(env: Mapping[str, str], name: str, default: float, kind=float,
                minimum: float = 0.0) -> Any:
    raw = env.get(name)
    if raw is None or str(raw).strip() == "":
        return kind(default)
    try:
        value = kind(str(raw).strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} must be >= {minimum}")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """How transient store errors are retried.

    Parameters
    ----------
    retries : int
        Retries after the first try (``0`` turns retrying off).
    base_delay : float
        Backoff before the first retry, in seconds; doubled for every further one.
    max_delay : float
        Cap on a single backoff.
    deadline : float
        Cap on one operation's total time (tries and sleeps): no retry starts once
        its backoff would end past it.
    jitter : float
        Fraction of each backoff that is randomized (0: none, 1: up to half of it).
    """

    retries: int = 8
    base_delay: float = 0.25
    max_delay: float = 20.0
    deadline: float = 180.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {self.retries!r}")
        for name in ("base_delay", "max_delay", "deadline"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RetryPolicy":
        """The policy set by ``CORTEXZOO_S3_RETRIES`` / ``_RETRY_BASE`` / ``_RETRY_MAX`` /
        ``_RETRY_DEADLINE`` (see the module docstring); a bad value is an error naming it."""
        env = os.environ if env is None else env
        d = cls()
        return cls(retries=_env_number(env, "CORTEXZOO_S3_RETRIES", d.retries, int),
                   base_delay=_env_number(env, "CORTEXZOO_S3_RETRY_BASE", d.base_delay),
                   max_delay=_env_number(env, "CORTEXZOO_S3_RETRY_MAX", d.max_delay),
                   deadline=_env_number(env, "CORTEXZOO_S3_RETRY_DEADLINE", d.deadline))

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        full = min(self.max_delay, self.base_delay * (2.0 ** retry))
        u = (rng or random).random()
        return full * (1.0 - self.jitter * 0.5 * u)


class RetryStats:
    """Thread-safe counters of what was retried (shared by all threads using a store)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.retries = 0            # sleeps-and-tries-again, over all operations
        self.operations_retried = 0  # operations that needed at least one retry
        self.recovered = 0          # of those, the ones that then succeeded
        self.gave_up = 0            # operations that failed on a transient error, out of retries
        self.by_error: Counter[str] = Counter()

    def _add(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                if k == "error":
                    continue
                setattr(self, k, getattr(self, k) + v)
            if "error" in kw:
                self.by_error[kw["error"]] += 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"retries": self.retries, "operations_retried": self.operations_retried,
                    "recovered": self.recovered, "gave_up": self.gave_up,
                    "by_error": dict(self.by_error)}


class StoreUnavailableError(OSError):
    """A transient error outlasted the retry policy (the last error is the cause)."""

    def __init__(self, message: str, attempts: int, seconds: float) -> None:
        super().__init__(errno.EIO, message)
        self.attempts, self.seconds = attempts, seconds

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def call_with_retry(fn: Callable[[], T], *, policy: RetryPolicy, stats: RetryStats | None = None,
                    what: str = "store operation", sleep: Callable[[float], None] = time.sleep,
                    rng: random.Random | None = None,
                    clock: Callable[[], float] = time.monotonic) -> T:
    """Call ``fn()``; retry it on transient errors as ``policy`` says.

    Non-transient errors propagate unchanged on the first occurrence. When the
    retries or the deadline run out, :class:`StoreUnavailableError` is raised from the
    last error, naming ``what``, the number of tries and the time spent.
    """
    t0 = clock()
    retry = 0
    while True:
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised if not transient
            if classify(exc) != TRANSIENT:
                raise
            name = error_name(exc)
            if stats is not None:
                stats._add(error=name)
            elapsed = clock() - t0
            delay = policy.backoff(retry, rng)
            if retry >= policy.retries or elapsed + delay > policy.deadline:
                if stats is not None:
                    stats._add(gave_up=1)
                raise StoreUnavailableError(
                    f"{what} failed after {retry + 1} tries in {elapsed:.1f} s "
                    f"(last error: {name}: {exc}); the store is unreachable or overloaded "
                    "(files written before are untouched). Check the endpoint and network, or "
                    "raise CORTEXZOO_S3_RETRIES / CORTEXZOO_S3_RETRY_DEADLINE to wait longer",
                    attempts=retry + 1, seconds=elapsed) from exc
            if stats is not None:
                stats._add(retries=1, operations_retried=1 if retry == 0 else 0)
            log.warning("%s: %s (%s); retry %d/%d in %.2f s", what, name,
                        str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                        retry + 1, policy.retries, delay)
            sleep(delay)
            retry += 1
        else:
            if retry and stats is not None:
                stats._add(recovered=1)
            return out
