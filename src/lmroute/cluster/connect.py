"""Joining the Ray cluster a command runs on, with a one-line error where there is none.

``ray.init`` given an address where no head node answers (a mistyped host, a head that is gone, a
stale ``/tmp/ray/ray_current_cluster``) tries again and again for many minutes, then raises a
traceback; so it does at a port that accepts connections but is no head node's (the dashboard's,
another server's). So the address is first resolved as ``ray.init`` resolves it, its port tried for
a few seconds, and then asked one question of a head node's GCS, which a head answers at once.

:func:`library_error` finds, in the Ray errors that wrap it, the lmroute error a worker raised:
the one line the command ends with.
"""

from __future__ import annotations

import logging
import os
import socket

from lmroute.exceptions import ConfigError, LmrouteError

#: Seconds the head node's port may take to accept a connection.
CONNECT_TIMEOUT = 10.0
#: Seconds the head node's GCS may take to answer a gRPC call.
GCS_TIMEOUT = 10.0
#: A call of every head node's GCS (the one ray.init makes first), with an empty request.
_GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"


def init_ray(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (``ray.init``'s: ``auto``, ``host:6379``, ``ray://...``,
    ``local``; None: ``RAY_ADDRESS``, else the last ``ray start`` here, else a new local cluster),
    unless this process already has. ConfigError when no cluster answers there."""
    import ray

    if ray.is_initialized():
        return
    # A ray:// client address has its own timeout; ray.init reads RAY_ADDRESS for None and auto.
    named = (os.environ.get("RAY_ADDRESS") or address) if address in (None, "auto") else address
    if "://" not in (named or ""):
        _check_head(address)
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as exc:  # a ray:// address nothing answers at
        raise ConfigError(f"cannot join the Ray cluster at {address}: {exc}") from None
    except RuntimeError as exc:
        if not str(exc).startswith("Version mismatch"):
            raise
        ray.shutdown()  # connected half way: a later ray.init in this process starts afresh
        versions = " ".join(str(exc).removeprefix("Version mismatch:").split())
        raise ConfigError(
            f"cannot join the Ray cluster at {address or 'RAY_ADDRESS or the last `ray start` here'}: "
            f"its Ray or Python version is not this command's ({versions}); install the cluster's "
            "versions where the command runs"
        ) from None


def _check_head(address: str | None) -> None:
    from ray._private.services import canonicalize_bootstrap_address

    try:
        head = canonicalize_bootstrap_address(address)  # type: ignore[arg-type]  # None, as ray.init gives it
    except ConnectionError:  # auto, and no cluster runs here
        raise ConfigError(
            f"Ray address {address}: no Ray cluster runs on this machine (start one with "
            "`ray start --head`, or name its head node HOST:6379)"
        ) from None
    except ValueError as exc:
        given = address if address not in (None, "auto") else "in RAY_ADDRESS"  # read for None and auto
        raise ConfigError(
            f"Ray address {given}: {exc} (expected auto, local, HOST:PORT or ray://HOST:PORT)"
        ) from None
    if head is None:  # a new local cluster
        return
    host, _, port = head.rpartition(":")
    where = address if address not in (None, "auto") else f"{head} (RAY_ADDRESS or the last `ray start` here)"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except ValueError:
        raise ConfigError(f"Ray address {where}: the port is not a number") from None
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at {where}: {exc.strerror or exc} "
            "(is its head node running? --ray-address local starts a new cluster here)"
        ) from None
    _check_gcs(head, where)


def _check_gcs(head: str, where: str) -> None:
    """ConfigError when ``head`` does not answer as a head node's GCS (a gRPC server) does."""
    import grpc

    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # the cluster speaks TLS, set up by Ray's own variables: left to ray.init
    with grpc.insecure_channel(head) as channel:
        try:
            channel.unary_unary(_GCS_PROBE)(b"", timeout=GCS_TIMEOUT)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]  # the RpcError of a call is also a Call
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ConfigError(
                    f"Ray address {where}: the port answers, but not as a Ray head node (not gRPC "
                    f"within {GCS_TIMEOUT:g} s); give the head's GCS port (6379 unless `ray start "
                    "--port` chose another), not the dashboard's or another server's"
                ) from None
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise ConfigError(
                    f"Ray address {where}: a gRPC server that is not a Ray head node's GCS (for the "
                    "Ray client's port, give ray://HOST:PORT)"
                ) from None
            # Any other answer (a refused key of a head with token authentication) is a head's.


def library_error(exc: BaseException) -> LmrouteError | None:
    """The lmroute error a worker raised, out of the Ray errors wrapping it; None if there is none."""
    from ray.exceptions import RayError

    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        # A RayTaskError may also be an instance of the error it wraps, with a traceback for message.
        if isinstance(current, LmrouteError) and not isinstance(current, RayError):
            return current
        for nested in (getattr(current, "cause", None), current.__cause__, current.__context__):
            if isinstance(nested, BaseException):
                pending.append(nested)
    return None
