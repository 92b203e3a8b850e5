"""SOPHON preflight: is this box ready for backend sail (and decoder sail)? Each problem is one
Finding with a one-line fix, so `blipd check` and the service start say what to do instead of
failing deep inside sail (whose 3.9.0 even exits the process on some errors).

Checks: TPU/VPU device nodes and their permissions, `sophon.sail` importable and which release it
is, the TPU's chip (`Handle.get_target`) against each bmodel's chip and the workers against its
cores, free device memory where sail can read it, and the open-files limit for many decode
channels. On a machine without any SOPHON device or sail it says so, and passes unless the
configuration needs the backend. sail is only imported when something needs it (an ordinary Linux
box never imports it), through blip.runtime.sail, the one place that imports it.

The release is never read from `sail.__version__`: in 3.9.0-3.10.7 that is the build date
("master(20240315_101010)"). blip.runtime.sail.sail_build reads the wheel's metadata and the
features (`BMImage.asnumpy` from 3.9.1, `Decoder.is_eof` from 3.10.2).

The VPU: SoC boxes have /dev/vpu*, older drivers /dev/bm-vpu*; on a PCIe host the decoder reaches
the VPU through the card's /dev/bm-sophon<N> (bmvid), so any of them will do.
"""
import glob
import importlib.util
import os
import re
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

LEVELS = ("ok", "info", "warn", "error")
TPU_NODES = ("bm-sophon*", "bm-tpu*")  # PCIe cards, SoC boxes
PCIE_NODES = ("bm-sophon*",)
VPU_NODES = ("bm-vpu*", "vpu*")
CHIPS = ("BM1684X", "BM1684", "BM1688", "CV186AH")
_CHIP_IN_NAME = re.compile(r"_(bm1684x|bm1684|bm1688|cv186ah)_", re.IGNORECASE)
MIN_NOFILE = 65536
SAIL_FIXED_EXIT = "3.9.1"
SAIL_FIXED_EOF = "3.10.2"


@dataclass(frozen=True)
class Finding:
    """One preflight result. level: ok | info | warn | error; fix: one line, empty when none is needed."""

    check: str
    level: str
    message: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        """False only for errors: warnings and notes do not stop the daemon."""
        return self.level != "error"

    def line(self) -> str:
        text = "%-5s %-8s %s" % (self.level, self.check, self.message)
        return text + (" -> " + self.fix if self.fix else "")

    def __str__(self) -> str:
        return self.line()


def failed(findings: Sequence[Finding]) -> bool:
    """True when any finding is an error."""
    return any(f.level == "error" for f in findings)


def _nodes(dev_dir: str, patterns: Sequence[str]) -> List[str]:
    found: List[str] = []
    for pattern in patterns:
        found += sorted(glob.glob(os.path.join(dev_dir, pattern)))
    return found


def _node_findings(kind: str, nodes: List[str], needed: bool, fix_missing: str) -> List[Finding]:
    if not nodes:
        return [Finding(kind, "error" if needed else "info", "no %s device node" % kind, fix_missing if needed else "")]
    blocked = [n for n in nodes if not os.access(n, os.R_OK | os.W_OK)]
    if blocked:
        return [Finding(kind, "error" if needed else "warn", "%s not readable and writable by this user" % ", ".join(blocked),
                        "add the service user to the group that owns %s (ls -l), or list it in DeviceAllow=" % blocked[0])]
    return [Finding(kind, "ok", ", ".join(nodes))]


def _import_sail(needed: bool) -> Tuple[Any, List[Finding]]:
    from blip.errors import BackendError
    from blip.runtime.sail import import_sail, sail_build

    try:
        sail = import_sail("preflight")
    except BackendError as exc:
        return None, [Finding("sail", "error" if needed else "info", str(exc).split(": install")[0],
                              "pip3 install the sophon-sail wheel of your SOPHON SDK (built for this Python)")]
    build = sail_build(sail)
    findings = [Finding("sail", "ok", "sophon.sail %s" % build.describe())]
    if build.raises_errors is None:
        findings.append(Finding("sail", "warn", "cannot tell the sail release (no sophon wheel metadata, no BMImage)",
                                "pip3 show sophon (or sophon_arm, sophon_arm_pcie) should name 3.9.1 or later"))
    elif not build.raises_errors:
        findings.append(Finding("sail", "warn", "this sail (%s) calls exit() on a bad bmodel, handle id or shape, "
                                "killing the daemon" % build.describe(), "upgrade sophon-sail to %s or later" % SAIL_FIXED_EXIT))
    elif build.exact_eof is False:
        findings.append(Finding("sail", "info", "this sail (%s) reports end of file like a read failure" % build.describe(),
                                "upgrade sophon-sail to %s or later for exact end-of-stream reporting" % SAIL_FIXED_EOF))
    return sail, findings


def bmodel_chip(path: str, chips: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The chip a bmodel was compiled for: given by the caller (manifest), else from the seed's
    file name pattern `<graph>_<chip>_f32_1b.bmodel`; None when unknown."""
    if chips and path in chips:
        return chips[path].upper()
    found = _CHIP_IN_NAME.search(os.path.basename(path))
    return found.group(1).upper() if found else None


def _device_findings(sail: Any, device: int, bmodels: Sequence[str], chips: Optional[Mapping[str, str]],
                     workers: int) -> List[Finding]:
    from blip.runtime.sail import chip_cores, one_line, sail_errors

    try:
        target = str(sail.Handle(device).get_target())
    except sail_errors(sail) as exc:  # SailDeviceError("init device failure") for a bad id
        return [Finding("tpu", "error", "TPU %d cannot be opened: %s" % (device, one_line(exc)),
                        "check `bm-smi` and the device id (model.device in the config)")]
    findings = [Finding("tpu", "ok", "TPU %d is a %s" % (device, target))]
    cores = chip_cores(target)
    if cores is not None and workers > cores:
        findings.append(Finding("cores", "error", "model.workers is %d, a %s has %d TPU core(s)" % (workers, target, cores),
                                "set model.workers to %d or less" % cores))
    for path in bmodels:
        chip = bmodel_chip(path, chips)
        name = os.path.basename(path)
        if chip is None:
            findings.append(Finding("bmodel", "info", "%s: chip unknown (not in its name or the manifest)" % name))
        elif chip != target.upper():
            findings.append(Finding("bmodel", "error", "%s is compiled for %s, this device is %s" % (name, chip, target),
                                    "use the %s bmodels (blipd package-seed DIR --chip %s)" % (target, target.lower())))
        else:
            findings.append(Finding("bmodel", "ok", "%s matches %s" % (name, target)))
    findings += _memory_findings(sail, device, bmodels)
    return findings


def _memory_findings(sail: Any, device: int, bmodels: Sequence[str]) -> List[Finding]:
    stat = getattr(sail, "get_dev_stat", None)
    if stat is None:
        return [Finding("memory", "info", "free device memory not readable (this sail has no get_dev_stat)")]
    try:
        total, used = [int(v) for v in stat(device)[:2]]
    except Exception as exc:  # SailDeviceError and friends
        return [Finding("memory", "info", "free device memory not readable: %s" % type(exc).__name__)]
    free = total - used
    need = sum(os.path.getsize(p) for p in bmodels if os.path.isfile(p)) // (1 << 20)
    if need and free < need:
        return [Finding("memory", "warn", "%d MiB free of %d, the bmodels take about %d MiB" % (free, total, need),
                        "stop other TPU programs, or enlarge the NPU heap (memory_edit.sh, docs/sophon.md)")]
    return [Finding("memory", "ok", "%d MiB free of %d MiB" % (free, total))]


def _nofile_finding() -> List[Finding]:
    try:
        import resource
    except ImportError:
        return []
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < MIN_NOFILE:
        return [Finding("limits", "info", "open files limit %d; many sail decode channels need more" % soft,
                        "LimitNOFILE=%d in the unit (or ulimit -n %d)" % (MIN_NOFILE, MIN_NOFILE))]
    return []


def run_preflight(
    backend_needed: bool,
    bmodels: Sequence[str] = (),
    device: int = 0,
    decoder_needed: bool = False,
    chips: Optional[Mapping[str, str]] = None,
    dev_dir: str = "/dev",
    workers: int = 1,
) -> List[Finding]:
    """Findings for this machine; `failed(findings)` says whether the configuration can run here.

    backend_needed: the config runs backend sail (its bmodels are checked against the chip).
    decoder_needed: a stream uses decoder sail (VPU nodes and the files limit are checked).
    chips:          bmodel path -> chip, where the manifest knows it (else from the file name).
    workers:        sail workers (model.workers), one TPU core each: at most the chip's cores.
    """
    needed = backend_needed or decoder_needed
    tpu = _nodes(dev_dir, TPU_NODES)
    if not tpu and importlib.util.find_spec("sophon") is None:
        level = "error" if needed else "info"
        return [Finding("platform", level, "not a SOPHON machine: no %s device and no sophon.sail" % "/".join(TPU_NODES),
                        "use backend onnxruntime and decoder opencv, or install libsophon and sophon-sail" if needed else "")]
    findings = _node_findings("tpu", tpu, needed, "load the SOPHON driver (libsophon); `bm-smi` must list the TPU")
    if decoder_needed:
        vpu = _nodes(dev_dir, VPU_NODES) or _nodes(dev_dir, PCIE_NODES)  # PCIe: the VPU is behind bm-sophon<N>
        findings += _node_findings("vpu", vpu, True, "the VPU driver is missing: install libsophon, or use decoder opencv")
        findings += _nofile_finding()
    if not needed:
        return findings + [Finding("sail", "info", "backend and decoder sail not used: sophon.sail not loaded")]
    sail, sail_findings = _import_sail(needed)
    findings += sail_findings
    if sail is not None and tpu:
        findings += _device_findings(sail, device, bmodels, chips, workers if backend_needed else 1)
    return findings
