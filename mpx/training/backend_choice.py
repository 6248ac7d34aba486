"""Which backend trains: a name or object resolved to an mpx.TrainingBackend that can run the policy."""

from __future__ import annotations

from mpx.errors import BackendUnavailableError, MpxError, PolicyError
from mpx.plugins.backend import Backend, TrainingBackend
from mpx.policy import Policy


def training_backend(backend: str | Backend) -> TrainingBackend:
    """The backend object, which must implement the training protocol."""
    if isinstance(backend, str):
        from mpx.plugins.manager import get_backend

        backend = get_backend(backend)
    if not isinstance(backend, Backend):
        raise MpxError(f"backend must be a name such as 'cpu' or an mpx.Backend, not {type(backend).__name__}")
    if not isinstance(backend, TrainingBackend):
        raise BackendUnavailableError(
            f"backend {backend.name!r} runs ops but does not train torch models (it is not an mpx.TrainingBackend); "
            "train on 'cpu' or 'cuda'"
        )
    return backend


def check_policy(backend: TrainingBackend, policy: Policy) -> None:
    """Raise PolicyError unless `backend` has every format of `policy` and accepts it."""
    missing = sorted(
        {f.name for f in (policy.params, policy.compute, policy.output, policy.backward)}
        - {f.name for f in backend.formats}
    )
    if missing:
        raise PolicyError(
            f"backend {backend.name!r} cannot run policy {policy} (no {', '.join(missing)}); "
            f"pick a policy in {', '.join(f.name for f in backend.formats)}"
        )
    backend.check_policy(policy)
