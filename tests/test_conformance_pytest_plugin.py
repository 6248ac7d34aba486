"""`pytest --mpx-backend NAME`: the conformance cases as pytest items, same ids, same runner."""

import pytest
from mpx.conformance.cases import generate

from mpx.formats import format as lookup_format
from mpx.plugins import reload_plugins

pytest_plugins = ["pytester"]
# -p no:mpx blocks the installed entry point so that the plugin is loaded exactly once, by module name
PLUGIN = ["-p", "no:mpx", "-p", "mpx.conformance.pytest_plugin", "-p", "no:cacheprovider"]


def test_cases_become_items_with_the_case_ids(pytester):
    result = pytester.runpytest(
        *PLUGIN, "--mpx-backend", "cpu", "--mpx-op", "add", "--mpx-format", "fp16", "--co", "-q"
    )
    ids = [c.id for c in generate([lookup_format("fp16")], ["add"])]
    collected = [line.split("::", 1)[1] for line in result.outlines if line.startswith("mpx-conformance[cpu]::")]
    assert collected == ids


def test_cpu_cases_pass_as_tests(pytester):
    result = pytester.runpytest(*PLUGIN, "--mpx-backend", "cpu", "--mpx-op", "add", "--mpx-format", "bf16")
    result.assert_outcomes(passed=len(generate([lookup_format("bf16")], ["add"])))


def test_an_unavailable_backend_is_one_skipped_item_with_its_reason(pytester):
    result = pytester.runpytest(*PLUGIN, "--mpx-backend", "cuda", "--mpx-op", "add", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*backend not available*"])


@pytest.fixture
def fresh_registry():
    yield
    reload_plugins()  # the in-process run below registers a conftest backend in this process's registry


def test_a_failing_case_fails_its_item_with_status_and_detail(pytester, fresh_registry):
    pytester.makeconftest(
        """
        import mpx
        from mpx.backends.cpu.backend import CpuBackend

        class OffByOne(CpuBackend):
            name = "offbyone"
            def run(self, op, fmt, inputs, pass_="forward", grad_outputs=None):
                outputs = super().run(op, fmt, inputs, pass_, grad_outputs)
                return tuple(o + 1 for o in outputs)

        class Plugin:
            @mpx.hookimpl
            def mpx_backends(self):
                yield mpx.BackendSpec(name="offbyone", factory=lambda **o: OffByOne(**o))

        def pytest_configure(config):
            from mpx.plugins import registry
            registry()._collect("conftest:offbyone", Plugin().mpx_backends)
            registry().sources["offbyone"] = "mpx-precision:offbyone"  # run in-process, as a built-in would
        """
    )
    result = pytester.runpytest(
        *PLUGIN, "--mpx-backend", "offbyone", "--mpx-op", "add", "--mpx-format", "fp32"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) > 0
    result.stdout.fnmatch_lines(["*offbyone add/fp32/forward/normal: fail*out of bound*"])


@pytest.mark.parametrize("option", ["--mpx-format=fp12"])
def test_bad_selection_is_a_usage_error(pytester, option):
    result = pytester.runpytest(*PLUGIN, "--mpx-backend", "cpu", option)
    assert result.ret != 0
    assert (
        "unknown format 'fp12'; formats: fp32, fp16, bf16, fp8_e4m3, fp8_e5m2"
        in result.stdout.str() + result.stderr.str()
    )
