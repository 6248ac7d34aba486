"""A pytest plugin: `pytest --mpx-backend NAME` runs the conformance cases as test items.

Same case ids and the same runner as `mpx conformance`: a case with wrong numbers, an error, a crash or a
timeout fails; unsupported, upcast and fallback cases are skipped with their reason (Status.junit); backends
that are not built in run their cases in child processes (batched, on first use). With --mpx-backend only the
conformance cases are collected, not the test files of the project the run starts in.

pytest loads this module in every run of this environment (entry point pytest11): it imports nothing but pytest
until --mpx-backend is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mpx", "mpx conformance suite")
    group.addoption(
        "--mpx-backend",
        action="append",
        default=[],
        metavar="NAME",
        help="run the conformance cases on NAME (and collect nothing else)",
    )
    group.addoption("--mpx-format", action="append", default=[], metavar="FMT", help="only these formats")
    group.addoption("--mpx-op", action="append", default=[], metavar="OP", help="only these ops")
    group.addoption(
        "--mpx-backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option for get_backend(NAME, KEY=VALUE) (repeatable; VALUE is JSON where it parses, else a string)",
    )
    group.addoption("--mpx-timeout", type=float, default=60.0, metavar="S", help="per-case timeout (isolated runs)")


class CaseFailed(Exception):
    """A case that did not give right numbers (fail, downcast, error, crash, timeout)."""


class _Runtime:
    """Per backend: the built backend (in-process) or the isolated results (batched once)."""

    def __init__(self, name: str, cases: list[Any], timeout: float, options: dict[str, Any]) -> None:
        from mpx.conformance.runner import ReferenceCache
        from mpx.plugins import is_builtin

        self.name, self.cases, self.timeout, self.options = name, cases, timeout, options
        self.isolated = not is_builtin(name)
        self.cache = ReferenceCache()
        self.backend: Any = None
        self.results: dict[str, Any] | None = None

    def result(self, case: Any) -> Any:
        if self.isolated:
            if self.results is None:
                from mpx.conformance.isolation import BackendRef, run_isolated

                outcomes, _ = run_isolated(BackendRef(self.name, dict(self.options)), self.cases, self.timeout)
                self.results = {r.id: r for r in outcomes}
            return self.results[case.id]
        from mpx.conformance.runner import run_case
        from mpx.plugins import get_backend

        if self.backend is None:
            self.backend = get_backend(self.name, **self.options)
        return run_case(self.backend, case, self.cache)


class CaseItem(pytest.Item):
    """One conformance case on one backend."""

    def __init__(self, *, case: Any, runtime: _Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case, self.runtime = case, runtime

    def runtest(self) -> None:
        from mpx.conformance.render.grid import format_ulp

        result = self.runtime.result(self.case)
        self.user_properties.append(("mpx-status", result.status.value))
        if result.status.junit == "skipped":
            pytest.skip(f"{result.status}: {result.detail}")
        if not result.status.passes:
            raise CaseFailed(f"{result.status}{format_ulp(result.max_error_ulp, ' ({} ulp)')}: {result.detail}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CaseFailed):
            return f"{self.runtime.name} {self.case.id}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.runtime.name}::{self.case.id}"


class UnavailableItem(pytest.Item):
    """A selected backend that cannot run here: one skipped item that says why."""

    def __init__(self, *, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def runtest(self) -> None:
        pytest.skip(f"backend not available: {self.reason}")


class BackendCollector(pytest.Collector):
    """The cases of one backend."""

    def __init__(
        self,
        *,
        backend: str,
        reason: str | None,
        cases: list[Any],
        timeout: float,
        options: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.backend, self.reason, self.cases, self.timeout = backend, reason, cases, timeout
        self.options = options

    def collect(self) -> list[pytest.Item]:
        if self.reason is not None:
            return [UnavailableItem.from_parent(self, name="available", reason=self.reason)]
        runtime = _Runtime(self.backend, self.cases, self.timeout, self.options)
        return [CaseItem.from_parent(self, name=case.id, case=case, runtime=runtime) for case in self.cases]


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    """With --mpx-backend, collect no test files (testpaths or arguments): the conformance cases are the run."""
    if not session.config.getoption("mpx_backend"):
        return None
    session.perform_collect(args=[])  # the conformance items join in pytest_collection_modifyitems
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The selected backends' cases as items (first, so that -k and --deselect apply to them)."""
    names = config.getoption("mpx_backend")
    if not names:
        return
    from mpx.conformance.cases import generate
    from mpx.conformance.scenarios import select_formats
    from mpx.conformance.suite import resolve_backends
    from mpx.conformance.verdict import parse_backend_options
    from mpx.errors import MpxError

    try:
        options = parse_backend_options(config.getoption("mpx_backend_option"), "--mpx-backend-option")
        cases = generate(select_formats(config.getoption("mpx_format")), config.getoption("mpx_op"))
        backends = resolve_backends(names)
    except MpxError as error:  # an unknown format, op or backend is a usage error, not a crash of pytest
        raise pytest.UsageError(str(error)) from None
    for name, reason in backends:
        collector = BackendCollector.from_parent(
            session,
            name=f"mpx-conformance[{name}]",
            nodeid=f"mpx-conformance[{name}]",
            backend=name,
            reason=reason,
            cases=cases,
            timeout=config.getoption("mpx_timeout"),
            options=options,
        )
        items.extend(session.genitems(collector))  # through the collection hooks: counted, errors reported


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    """Say why the project's own tests did not run."""
    if not config.getoption("mpx_backend"):
        return None
    skipped = " ".join(config.args) or str(config.invocation_params.dir)
    return f"mpx: --mpx-backend given: only the conformance cases were collected, not the tests in {skipped}"
