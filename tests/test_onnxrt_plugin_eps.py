"""Plugin EP libraries: found in installed packages, the env and options; reported when they cannot load."""

from __future__ import annotations

import importlib
import sys
import types

import pytest

import mpx
from mpx.backends.onnxrt import ep_libraries, semantics
from mpx.backends.onnxrt.ep_libraries import EpLibrary, parse_libraries
from mpx.backends.onnxrt.providers import Target


def test_env_form_names_each_library():
    found = parse_libraries("ggml=/lib/a.so, npu=/lib/b.so", "MPX_ORT_EP_LIBRARIES")
    assert [(lib.ep_name, lib.path) for lib in found] == [("ggml", "/lib/a.so"), ("npu", "/lib/b.so")]


def test_option_form_is_a_mapping():
    assert parse_libraries({"ggml": "/lib/a.so"}, "option")[0] == EpLibrary("ggml", "/lib/a.so", "option")


def test_an_entry_without_a_path_says_the_form():
    with pytest.raises(mpx.BackendUnavailableError, match="name=library path"):
        parse_libraries("ggml", "MPX_ORT_EP_LIBRARIES")


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"get_library_path": lambda: "/x.so", "get_ep_name": lambda: "OpenVINOExecutionProvider"}, "OpenVINO"),
        ({"get_library_path": lambda: "/x.so", "get_ep_names": lambda: ["QNNExecutionProvider"]}, "QNN"),
        ({"library_path": lambda: "/x.so", "EP_NAME": "ggml"}, "ggml"),
        ({"get_version": lambda: "1.0"}, None),
    ],
)
def test_the_package_conventions_real_plugin_eps_follow(attributes, expected):
    library = ep_libraries._library_of(types.SimpleNamespace(**attributes), "package x")
    assert (library.ep_name.removesuffix("ExecutionProvider") if library else None) == expected


@pytest.fixture
def acme_package(tmp_path, monkeypatch):
    """An installed plugin EP package (dist-info on sys.path) whose library does not exist."""
    dist = tmp_path / "onnxruntime_ep_acme-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-ep-acme\nVersion: 1.0\n")
    (dist / "top_level.txt").write_text("onnxruntime_ep_acme\n")
    (tmp_path / "onnxruntime_ep_acme").mkdir()
    (tmp_path / "onnxruntime_ep_acme" / "__init__.py").write_text(
        "def get_library_path():\n    return '/nonexistent/libacme_ep.so'\n\n"
        "def get_ep_name():\n    return 'AcmeExecutionProvider'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    ep_libraries.installed_packages.cache_clear()
    yield
    ep_libraries.installed_packages.cache_clear()
    sys.modules.pop("onnxruntime_ep_acme", None)


def test_an_installed_plugin_ep_package_is_discovered(acme_package):
    found = {lib.ep_name: lib for lib in ep_libraries.installed_packages()}
    assert found["AcmeExecutionProvider"].path == "/nonexistent/libacme_ep.so"
    assert found["AcmeExecutionProvider"].source == "package onnxruntime-ep-acme 1.0"


def test_a_library_that_cannot_load_is_listed_with_the_reason(acme_package):
    status = ep_libraries.register_all()
    assert "onnxruntime-ep-acme" in status["AcmeExecutionProvider"]
    assert "onnxrt:AcmeExecutionProvider: package onnxruntime-ep-acme 1.0: " in ep_libraries.summary()
    with pytest.raises(mpx.BackendUnavailableError, match="AcmeExecutionProvider"):
        mpx.get_backend("onnxrt:AcmeExecutionProvider")


def test_unknown_ep_names_say_how_to_register_a_plugin_library():
    with pytest.raises(mpx.BackendUnavailableError, match="MPX_ORT_EP_LIBRARIES"):
        mpx.get_backend("onnxrt:NoSuchExecutionProvider")


def test_device_options_are_refused_for_an_ep_that_is_not_a_plugin():
    with pytest.raises(mpx.BackendUnavailableError, match="device_type / device_id"):
        mpx.get_backend("onnxrt:CPUExecutionProvider", device_type="npu")


def test_mpx_backends_names_the_plugin_eps_in_the_onnxrt_row(acme_package):
    mpx.reload_plugins()
    row = next(e for e in mpx.list_backends() if e.name == "onnxrt")
    assert "plugin EPs: " in row.description and "AcmeExecutionProvider" in row.description


class _Assignment:
    def __init__(self, ep_name, names):
        self.ep_name, self._names = ep_name, names

    def get_nodes(self):
        return [types.SimpleNamespace(name=n, op_type="Mul", domain="") for n in self._names]


class _Session:
    def __init__(self, placement):
        self.placement = placement

    def get_provider_graph_assignment_info(self):
        return [_Assignment(ep, [name]) for name, ep in self.placement.items()]


def test_a_probe_whose_node_ran_on_the_cpu_ep_is_measured_through_fallback():
    session = _Session({"mpx_node_Cast_2": "AcmeEP", "mpx_node_Mul_4": "CPUExecutionProvider"})
    assert semantics._off_target(session, Target("AcmeEP", plugin=True)) == "mpx_node_Mul_4 on CPUExecutionProvider"
    assert semantics._off_target(_Session({"mpx_node_Mul_4": "AcmeEP"}), Target("AcmeEP", plugin=True)) == ""


def test_a_fallback_probe_reports_unknown_semantics_with_what_it_saw(monkeypatch):
    monkeypatch.setattr(semantics, "_off_target", lambda session, target: "mpx_node_Mul_3 on CPUExecutionProvider")
    measured = semantics.measure(mpx.format("fp16"), Target("CPUExecutionProvider"), ())
    assert (measured.overflow, measured.subnormals, measured.probe) == ("unknown", "unknown", "Mul")
    assert "through fallback" in measured.fallback and "overflow=inf, subnormals=keep" in measured.fallback


def test_the_users_libraries_come_first_option_then_env(monkeypatch):
    monkeypatch.setenv("MPX_ORT_EP_LIBRARIES", "UserEP=/env/libuser.so,OtherEP=/env/libother.so")
    option = parse_libraries({"UserEP": "/option/libuser.so"}, "option ep_libraries")
    chosen = {lib.ep_name: lib for lib in ep_libraries.libraries(option)}
    assert chosen["UserEP"].path == "/option/libuser.so"
    assert chosen["OtherEP"].source == "MPX_ORT_EP_LIBRARIES"
