"""A pytest plugin: `pytest --mpx-backend NAME` runs the conformance cases as test items.

Same case ids and the same runner as `mpx conformance`: a case with wrong numbers, an error, a crash or a
timeout fails; unsupported, upcast and fallback cases are skipped with their reason; backends that are not
built in run their cases in child processes (batched, on first use).
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mpx", "mpx conformance suite")
    group.addoption(
        "--mpx-backend", action="append", default=[], metavar="NAME", help="run the conformance cases on NAME"
    )
    group.addoption("--mpx-format", action="append", default=[], metavar="FMT", help="only these formats")
    group.addoption("--mpx-op", action="append", default=[], metavar="OP", help="only these ops")
    group.addoption("--mpx-timeout", type=float, default=60.0, metavar="S", help="per-case timeout (isolated runs)")


class CaseFailed(Exception):
    """A case that did not give right numbers (fail, error, crash, timeout)."""


class _Runtime:
    """Per backend: the built backend (in-process) or the isolated results (batched once)."""

    def __init__(self, name: str, cases: list[Any], timeout: float) -> None:
        from mpx.conformance.runner import ReferenceCache
        from mpx.conformance.suite import is_builtin

        self.name, self.cases, self.timeout = name, cases, timeout
        self.isolated = not is_builtin(name)
        self.cache = ReferenceCache()
        self.backend: Any = None
        self.results: dict[str, Any] | None = None

    def result(self, case: Any) -> Any:
        if self.isolated:
            if self.results is None:
                from mpx.conformance.isolation import BackendRef, run_isolated

                outcomes, _ = run_isolated(BackendRef(self.name), self.cases, self.timeout)
                self.results = {r.id: r for r in outcomes}
            return self.results[case.id]
        from mpx.conformance.runner import run_case

        from mpx.plugins import get_backend

        if self.backend is None:
            self.backend = get_backend(self.name)
        return run_case(self.backend, case, self.cache)


class CaseItem(pytest.Item):
    """One conformance case on one backend."""

    def __init__(self, *, case: Any, runtime: _Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case, self.runtime = case, runtime

    def runtest(self) -> None:
        result = self.runtime.result(self.case)
        self.user_properties.append(("mpx-status", result.status))
        if result.status in ("unsupported", "upcast", "fallback"):
            pytest.skip(f"{result.status}: {result.detail}")
        if result.status != "pass":
            error = f" ({result.max_error_ulp:.3g} ulp)" if result.max_error_ulp is not None else ""
            raise CaseFailed(f"{result.status}{error}: {result.detail}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed):
            return f"{self.runtime.name} {self.case.id}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
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

    def __init__(self, *, backend: str, reason: str | None, cases: list[Any], timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend, self.reason, self.cases, self.timeout = backend, reason, cases, timeout

    def collect(self) -> list[pytest.Item]:
        if self.reason is not None:
            return [UnavailableItem.from_parent(self, name="available", reason=self.reason)]
        runtime = _Runtime(self.backend, self.cases, self.timeout)
        return [CaseItem.from_parent(self, name=case.id, case=case, runtime=runtime) for case in self.cases]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    names = config.getoption("mpx_backend")
    if not names:
        return
    from mpx.conformance.cases import generate
    from mpx.conformance.scenarios import select_formats
    from mpx.conformance.suite import resolve_backends

    cases = generate(select_formats(config.getoption("mpx_format")), config.getoption("mpx_op"))
    for name, reason in resolve_backends(names):
        collector = BackendCollector.from_parent(
            session,
            name=f"mpx-conformance[{name}]",
            nodeid=f"mpx-conformance[{name}]",
            backend=name,
            reason=reason,
            cases=cases,
            timeout=config.getoption("mpx_timeout"),
        )
        items.extend(collector.collect())
