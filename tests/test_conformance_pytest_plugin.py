"""`pytest --mpx-backend NAME`: the conformance cases as pytest items, same ids, same runner."""

import subprocess
import sys

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
            def _run(self, op, fmt, inputs, pass_, grad_outputs):
                outputs = super()._run(op, fmt, inputs, pass_, grad_outputs)
                return tuple(o + 1 for o in outputs)

        class Plugin:
            @mpx.hookimpl
            def mpx_backends(self):
                yield mpx.BackendSpec(name="offbyone", factory=lambda **o: OffByOne(**o))

        def pytest_configure(config):
            from mpx.plugins import bounded
            from mpx.plugins.manager import registry
            registry()._collect("conftest:offbyone", bounded.here(lambda: list(Plugin().mpx_backends())))
            registry().sources["offbyone"] = "mpx-precision:offbyone"  # run in-process, as a built-in would
        """
    )
    result = pytester.runpytest(*PLUGIN, "--mpx-backend", "offbyone", "--mpx-op", "add", "--mpx-format", "fp32")
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


def test_only_the_conformance_cases_are_collected_not_the_projects_tests(pytester):
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_project.py").write_text("raise RuntimeError('a project test file was imported')\n")
    result = pytester.runpytest(*PLUGIN, "--mpx-backend", "cpu", "--mpx-op", "add", "--mpx-format", "fp32", "--co")
    assert result.ret == 0, result.stdout.str()
    ids = [c.id for c in generate([lookup_format("fp32")], ["add"])]
    result.stdout.fnmatch_lines([f"collected {len(ids)} items", "*only the conformance cases were collected*tests"])
    assert "test_project" not in result.stdout.str()


# the plugin loads in every pytest run of an environment that has mpx installed: it must stay that cheap
PROBE = """
import sys, traceback

class FirstTorchImport:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.stderr.write("".join(line for line in traceback.format_stack() if "<frozen" not in line))
            sys.meta_path.remove(self)

sys.meta_path.insert(0, FirstTorchImport())
import mpx.conformance.pytest_plugin
print(" ".join(name for name in ("torch", "numpy", "mpx.ops", "mpx.plugins") if name in sys.modules))
"""


def test_loading_the_plugin_imports_neither_torch_nor_the_op_registry():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    heavy = done.stdout.split()
    assert heavy == [], f"importing the pytest plugin imported {heavy}; torch came in through:\n{done.stderr}"


def test_backend_options_reach_the_backend(pytester):
    """--mpx-backend-option gemm_inputs=bf16: the fp32 matmul cases that bf16 inputs spoil fail as downcast."""
    args = ["--mpx-backend", "cpu", "--mpx-op", "matmul", "--mpx-format", "fp32"]
    result = pytester.runpytest(*PLUGIN, *args, "--mpx-backend-option", "gemm_inputs=bf16")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 6
    result.stdout.fnmatch_lines(["*downcast*computed as bf16*"])


def test_a_malformed_backend_option_is_a_usage_error(pytester):
    result = pytester.runpytest(*PLUGIN, "--mpx-backend", "cpu", "--mpx-backend-option", "gemm_inputs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mpx-backend-option*KEY=VALUE*"])
