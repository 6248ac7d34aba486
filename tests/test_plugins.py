"""The backend registry: built-ins and vendor plugins found through real entry points (fake dist-info folders)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

import mpx
from mpx.plugins.manager import BackendEntry, registry


def entry(name: str) -> BackendEntry:
    matches = [e for e in mpx.list_backends() if e.name == name]
    assert len(matches) == 1, f"{name!r} listed {len(matches)} times: {mpx.list_backends()}"
    return matches[0]


def test_builtin_backends_are_found_through_entry_points() -> None:
    mpx.reload_plugins()
    sources = {e.name: e.source for e in mpx.list_backends()}
    assert {"cpu": "mpx-precision:cpu", "cuda": "mpx-precision:cuda", "onnxrt": "mpx-precision:onnxrt"}.items() <= (
        sources.items()
    )


def test_cpu_is_available_with_every_format() -> None:
    cpu = entry("cpu")
    assert cpu.available and cpu.reason == ""
    assert cpu.formats == ("fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2")


def test_get_backend_builds_cpu_with_options() -> None:
    backend = mpx.get_backend("cpu", overflow="saturate")
    assert isinstance(backend, mpx.Backend)
    assert (backend.name, backend.overflow) == ("cpu", "saturate")


def test_a_good_plugin_is_listed_and_selectable(install_plugins: Callable[..., None]) -> None:
    install_plugins("good")
    good = entry("goodnpu")
    assert (good.available, good.formats, good.source) == (True, ("fp32", "bf16"), "mpx-good-vendor:goodnpu")
    backend = mpx.get_backend("goodnpu", overflow="saturate")
    assert (type(backend).__name__, backend.variant, backend.overflow) == ("GoodNpuBackend", "", "saturate")


def test_a_variant_reaches_the_factory(install_plugins: Callable[..., None]) -> None:
    install_plugins("good")
    assert mpx.get_backend("goodnpu:chip1").variant == "chip1"


def test_an_unavailable_backend_is_listed_with_its_reason_and_refused(install_plugins: Callable[..., None]) -> None:
    install_plugins("good")
    offline = entry("goodnpu-offline")
    assert (offline.available, offline.reason) == (False, "its driver is not loaded")
    with pytest.raises(mpx.BackendUnavailableError, match="goodnpu-offline.*its driver is not loaded"):
        mpx.get_backend("goodnpu-offline")


def test_a_plugin_that_fails_to_import_is_listed_with_its_error(install_plugins: Callable[..., None]) -> None:
    install_plugins("broken", "good")
    broken = entry("brokennpu")
    assert not broken.available
    assert broken.source == "mpx-broken-vendor:brokennpu"
    assert "ImportError: libbrokennpu.so: cannot open shared object file" in broken.reason
    with pytest.raises(mpx.BackendUnavailableError, match="mpx-broken-vendor:brokennpu.*libbrokennpu.so"):
        mpx.get_backend("brokennpu")


def test_a_broken_plugin_leaves_the_others_working(install_plugins: Callable[..., None]) -> None:
    install_plugins("broken", "good")
    assert mpx.get_backend("cpu").name == "cpu"
    assert mpx.get_backend("goodnpu").name == "goodnpu"


def test_two_plugins_claiming_one_name_is_an_error_naming_both(install_plugins: Callable[..., None]) -> None:
    install_plugins("good", "duplicate")
    with pytest.raises(mpx.PluginError, match="'goodnpu'.*mpx-(good|duplicate)-vendor.*mpx-(duplicate|good)-vendor"):
        mpx.get_backend("goodnpu")
    listed = entry("goodnpu")
    assert not listed.available
    assert "mpx-good-vendor:goodnpu" in listed.reason and "mpx-duplicate-vendor:twinnpu" in listed.reason


def test_a_name_conflict_leaves_the_other_backends_working(install_plugins: Callable[..., None]) -> None:
    install_plugins("good", "duplicate")
    assert mpx.get_backend("cpu").name == "cpu"
    assert entry("goodnpu-offline").reason == "its driver is not loaded"


def test_a_plugin_yielding_something_else_than_a_spec_is_recorded(install_plugins: Callable[..., None]) -> None:
    install_plugins("malformed")
    bad = entry("notaspec")
    assert not bad.available
    assert "must yield mpx.BackendSpec objects, got dict" in bad.reason
    assert "dictnpu" not in registry().names()


def test_a_spec_with_an_invalid_name_is_recorded(install_plugins: Callable[..., None]) -> None:
    install_plugins("malformed")
    bad = entry("badname")
    assert bad.source == "mpx-malformed-vendor:badname"
    assert "PluginError" in bad.reason and "'Bad Name' is not valid" in bad.reason


def test_a_plugin_module_without_a_hookimpl_is_recorded(install_plugins: Callable[..., None]) -> None:
    install_plugins("malformed")
    assert "defines no hook" in entry("nohook").reason


def test_malformed_plugins_leave_cpu_working(install_plugins: Callable[..., None]) -> None:
    install_plugins("malformed")
    assert entry("cpu").available
    assert mpx.get_backend("cpu").name == "cpu"


def test_disable_env_var_hides_every_external_plugin(
    install_plugins: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MPX_DISABLE_PLUGINS", "1")
    install_plugins("good", "broken")
    names = {e.name for e in mpx.list_backends()}
    assert {"cpu", "cuda", "onnxrt"} <= names
    assert not names & {"goodnpu", "goodnpu-offline", "brokennpu"}


def test_disable_env_var_can_name_single_entry_points(
    install_plugins: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugins("good", "broken")
    monkeypatch.setenv("MPX_DISABLE_PLUGINS", "brokennpu")
    mpx.reload_plugins()
    names = {e.name for e in mpx.list_backends()}
    assert "goodnpu" in names and "brokennpu" not in names


def test_unknown_backend_lists_the_names_and_suggests_the_closest() -> None:
    mpx.reload_plugins()
    with pytest.raises(mpx.BackendNotFoundError, match=r"'cpux'; did you mean 'cpu'\?.*Known: cpu, cuda, onnxrt"):
        mpx.get_backend("cpux")


def test_a_variant_on_a_backend_without_variants_is_not_found() -> None:
    with pytest.raises(mpx.BackendNotFoundError, match="takes no ':variant'"):
        mpx.get_backend("cpu:fast")


def test_an_unavailable_builtin_says_why() -> None:
    cuda = entry("cuda")
    if cuda.available:
        pytest.skip("a CUDA GPU is present: cuda is available here")
    with pytest.raises(mpx.BackendUnavailableError, match=re.escape(f"'cuda' is not available: {cuda.reason}")):
        mpx.get_backend("cuda")


@pytest.mark.parametrize(
    "fields,problem",
    [
        ({"name": "Bad Name", "factory": dict}, "is not valid"),
        ({"name": "npu:x", "factory": dict}, "':' is reserved"),
        ({"name": "npu", "factory": "not callable"}, "factory must be callable"),
        ({"name": "npu", "factory": dict, "unavailable": None}, "unavailable must be callable"),
        ({"name": "npu", "factory": dict, "formats": ("fp12",)}, "bad formats"),
    ],
)
def test_backend_spec_is_validated_on_construction(fields: dict, problem: str) -> None:
    with pytest.raises(mpx.PluginError, match=problem):
        mpx.BackendSpec(**fields)


def test_backend_spec_normalises_format_aliases() -> None:
    assert mpx.BackendSpec("npu", dict, formats=("half", "bfloat16")).formats == ("fp16", "bf16")


def test_a_factory_that_returns_no_backend_is_a_plugin_error(install_plugins: Callable[..., None]) -> None:
    install_plugins("duplicate")
    with pytest.raises(mpx.PluginError, match="factory returned NoneType, not an mpx.Backend"):
        mpx.get_backend("goodnpu")


def test_details_of_an_available_backend_are_listed_and_a_failing_one_is_said() -> None:
    from mpx.plugins.manager import BackendRegistry

    registry = BackendRegistry()
    registry.specs["seen"] = mpx.BackendSpec("seen", factory=object, description="a", details=lambda: "2 NPUs")
    registry.specs["broken"] = mpx.BackendSpec("broken", factory=object, details=lambda: 1 / 0)
    registry.sources.update(seen="x:seen", broken="x:broken")
    described = {e.name: e.description for e in registry.entries()}
    assert described == {"seen": "a; 2 NPUs", "broken": "details() failed: ZeroDivisionError: division by zero"}
    with pytest.raises(mpx.PluginError, match="details must be callable"):
        mpx.BackendSpec("bad", factory=object, details="2 NPUs")
