"""daemon/ops/preflight.py: on this (non-SOPHON) machine, and on the sail double with fake device nodes."""
import os
import sys

import pytest

from daemon.ops.preflight import failed, run_preflight
from tests.sail.conftest import FAKES

pytestmark = pytest.mark.sail


@pytest.fixture
def no_sail(monkeypatch):
    """This machine as it really is: the double neither on sys.path nor imported."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p) != str(FAKES)])
    for name in ("sophon.sail", "sophon"):
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.fixture
def dev(tmp_path):
    folder = tmp_path / "dev"
    folder.mkdir()
    for name in ("bm-sophon0", "bm-vpu0"):
        (folder / name).write_bytes(b"")
    return folder


def test_this_machine_is_not_sophon_and_passes_when_sail_is_not_needed(no_sail):
    findings = run_preflight(backend_needed=False)
    print("\n".join(f.line() for f in findings))
    assert not failed(findings)
    assert [f.check for f in findings] == ["platform"]
    assert "not a SOPHON machine" in findings[0].message
    assert "sophon" not in sys.modules  # never imported where it is not used


def test_this_machine_fails_when_the_config_needs_sail(no_sail):
    findings = run_preflight(backend_needed=True)
    assert failed(findings)
    assert "backend onnxruntime" in findings[0].fix and "\n" not in findings[0].line()


def test_sophon_box_with_matching_and_mismatched_bmodels(sail, dev, tmp_path):
    good = tmp_path / "blip_cap_bm1684x_f32_1b.bmodel"
    bad = tmp_path / "blip_itm_bm1684_f32_1b.bmodel"
    unknown = tmp_path / "vision.bmodel"
    for path in (good, bad, unknown):
        path.write_bytes(b"\0" * 1024)
    findings = run_preflight(True, [str(good), str(bad), str(unknown)], decoder_needed=True, dev_dir=str(dev))
    print("\n".join(f.line() for f in findings))
    by_level = {(f.check, f.level) for f in findings}
    assert {("tpu", "ok"), ("vpu", "ok"), ("sail", "ok"), ("memory", "ok")} <= by_level
    errors = [f for f in findings if f.level == "error"]
    assert len(errors) == 1 and "blip_itm_bm1684_f32_1b.bmodel is compiled for BM1684, this device is BM1684X" in errors[0].message
    assert "--chip bm1684x" in errors[0].fix
    assert any(f.check == "bmodel" and f.level == "info" and "vision.bmodel" in f.message for f in findings)
    assert any(f.check == "bmodel" and f.level == "ok" for f in findings)


@pytest.mark.parametrize("version,level", [("3.9.0", "warn"), ("3.9.4", "info")])
def test_old_sail_releases_are_flagged_by_their_features(sail, dev, version, level):
    sail._configure(version=version)
    assert sail.__version__.startswith("master(")  # the build date, as every real release has it
    findings = run_preflight(True, dev_dir=str(dev))
    flagged = [f for f in findings if f.check == "sail" and f.level == level]
    assert flagged and flagged[0].fix.startswith("upgrade sophon-sail")
    assert "by its features" in flagged[0].message
    assert not failed(findings)


def test_the_release_comes_from_the_wheel_metadata(sail, dev, tmp_path, monkeypatch):
    info = tmp_path / "site" / "sophon_arm_pcie-3.9.4.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sophon_arm_pcie\nVersion: 3.9.4\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    lines = [f.line() for f in run_preflight(True, dev_dir=str(dev)) if f.check == "sail"]
    assert any("3.9.4 (sophon_arm_pcie), build master(" in line for line in lines), lines


def test_a_pcie_host_reaches_the_vpu_through_bm_sophon(sail, tmp_path):
    dev = tmp_path / "pcie"
    dev.mkdir()
    (dev / "bm-sophon0").write_bytes(b"")
    findings = run_preflight(False, decoder_needed=True, dev_dir=str(dev))
    assert not failed(findings), [f.line() for f in findings]
    assert any(f.check == "vpu" and f.level == "ok" and "bm-sophon0" in f.message for f in findings)


@pytest.mark.parametrize("chip,workers,bad", [("BM1688", 2, False), ("BM1688", 3, True), ("BM1684X", 2, True)])
def test_workers_are_bounded_by_the_chips_cores(sail, dev, chip, workers, bad):
    sail._configure(chip=chip)
    findings = run_preflight(True, dev_dir=str(dev), workers=workers)
    assert failed(findings) == bad
    if bad:
        assert any(f.check == "cores" and "set model.workers to" in f.fix for f in findings)


def test_a_tpu_id_that_does_not_exist(sail, dev):
    findings = run_preflight(True, device=4, dev_dir=str(dev))
    errors = [f for f in findings if f.level == "error"]
    assert errors and "TPU 4 cannot be opened: SailDeviceError: init device failure" in errors[0].message


def test_missing_or_blocked_device_nodes_and_low_memory(sail, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    findings = run_preflight(True, dev_dir=str(empty))
    assert failed(findings) and "libsophon" in findings[0].fix
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    os.symlink(str(tmp_path / "nowhere"), str(blocked / "bm-sophon0"))  # present but unusable
    findings = run_preflight(True, dev_dir=str(blocked))
    assert failed(findings) and "DeviceAllow" in findings[0].fix
    sail._configure(dev_mem=(100, 95))
    model = tmp_path / "blip_cap_bm1684x_f32_1b.bmodel"
    with open(str(model), "wb") as fh:
        fh.truncate(20 << 20)
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "bm-sophon0").write_bytes(b"")
    memory = [f for f in run_preflight(True, [str(model)], dev_dir=str(dev)) if f.check == "memory"]
    assert memory[0].level == "warn" and "5 MiB free of 100" in memory[0].message
