"""Whether CUDA, run as a workspace's processes run, sees exactly the GPUs allocated to it.

NVML listing a GPU does not make it usable: the driver's CUDA library may be missing, the
GPU may have fallen off the bus, a device node may not reach the sandbox. So before a
local workspace with GPUs is ready (and again when it starts or is repaired), a short
probe runs as its processes do (`supervisor.run_once`: sandboxed as its uid, with its
device nodes and its `CUDA_VISIBLE_DEVICES`). It initialises CUDA through the driver API
(ctypes: no framework needed) and lists the devices it sees, with their UUIDs; it makes no
context, so a GPU CUDA lists but cannot compute on passes. Anything but exactly the
allocated devices fails the step, saying what CUDA said. `LOCAL_GPU_CHECK=off` skips it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence

TIMEOUT = 60  # seconds; initialising CUDA takes a few on large GPUs

# Run with `python -I -c`: standard library only, one JSON line on stdout.
PROBE = r"""
import ctypes, json
def say(**found):
    print(json.dumps(found))
    raise SystemExit(0)
try:
    cuda = ctypes.CDLL("libcuda.so.1")
except OSError as error:
    say(error=f"libcuda.so.1 cannot be loaded ({error})")
def name_of(status):
    text = ctypes.c_char_p()
    cuda.cuGetErrorName(status, ctypes.byref(text))
    return (text.value or b"").decode()
status = cuda.cuInit(0)
if status:
    say(error=f"cuInit failed with {name_of(status)} ({status})")
count = ctypes.c_int(0)
status = cuda.cuDeviceGetCount(ctypes.byref(count))
if status:
    say(error=f"cuDeviceGetCount failed with {name_of(status)} ({status})")
# The _v2 call gives a MIG device's own UUID (the first, its GPU's).
get_uuid = getattr(cuda, "cuDeviceGetUuid_v2", None) or cuda.cuDeviceGetUuid
devices = []
for ordinal in range(count.value):
    device = ctypes.c_int(0)
    cuda.cuDeviceGet(ctypes.byref(device), ordinal)
    name, uuid = ctypes.create_string_buffer(256), ctypes.create_string_buffer(16)
    cuda.cuDeviceGetName(name, 256, device)
    get_uuid(uuid, device)
    devices.append({"name": name.value.decode(errors="replace"), "uuid": uuid.raw.hex()})
say(devices=devices)
"""

NO_DEVICE = "CUDA_ERROR_NO_DEVICE"
_HEX_UUID = re.compile(r"^(?:gpu-|mig-)?([0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})$")


def uuid_hex(uuid: str) -> str:
    """NVML's "GPU-2b1c…" or "MIG-3f0a…" as the 32 hex digits CUDA reports; "" for the
    old MIG form ("MIG-GPU-…/1/0"), which CUDA's UUIDs cannot be matched against."""
    match = _HEX_UUID.match(uuid.lower())
    return match.group(1).replace("-", "") if match else ""


def judge(done: subprocess.CompletedProcess, uuids: Sequence[str]) -> tuple[str, str]:
    """(problem, seen) from the probe's run: the problem is "" when CUDA saw exactly the
    devices `uuids`; seen says what it saw, in words."""
    found = _answer(done.stdout)
    if found is None:
        return f"The GPU check could not run in the workspace: {_why(done)}", ""
    if "error" in found:
        return f"CUDA cannot use the workspace's GPUs: {found['error']}.", ""
    devices = found["devices"]
    seen = ", ".join(f"{d['name']} ({d['uuid'][:8]}…)" for d in devices) or "no GPU"
    wanted = [uuid_hex(uuid) for uuid in uuids]
    matches = (
        sorted(d["uuid"] for d in devices) == sorted(wanted)
        if all(wanted)
        else len(devices) == len(wanted)  # old MIG UUIDs: the count is what can be checked
    )
    if not matches:
        return (
            f"CUDA in the workspace sees {seen}, not its {len(wanted)} GPU(s) {', '.join(uuids)}.",
            seen,
        )
    return "", seen


def runs(uuids: Sequence[str]) -> list[list[str]]:
    """The probe runs that check `uuids`: whole GPUs together, each MIG device alone (a
    CUDA process enumerates one MIG device at most)."""
    whole = [uuid for uuid in uuids if not uuid.upper().startswith("MIG-")]
    return ([whole] if whole else []) + [[uuid] for uuid in uuids if uuid not in whole]


def run_on_host(uuids: Sequence[str] | None = None) -> subprocess.CompletedProcess:
    """The probe on this host itself, outside any sandbox, as the portal: with only `uuids`
    visible, or every GPU. TimeoutExpired after TIMEOUT."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if uuids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(uuids)
    return subprocess.run(
        [sys.executable, "-I", "-c", PROBE],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def seen_uuids(done: subprocess.CompletedProcess) -> set[str]:
    """The UUIDs (32 hex digits) of the devices the probe listed; none if it listed none."""
    found = _answer(done.stdout)
    return {d["uuid"] for d in found.get("devices", [])} if found else set()


def seen_on_host(uuid: str) -> bool:
    """Whether CUDA on the host, outside any sandbox, sees this device asked for alone; a
    probe that hangs there sees nothing."""
    try:
        return uuid_hex(uuid) in seen_uuids(run_on_host([uuid]))
    except subprocess.TimeoutExpired:
        return False


def unseen(done: subprocess.CompletedProcess, uuids: Sequence[str]) -> list[str]:
    """Which of `uuids` CUDA initialised without seeing (listed no device for, or answered
    CUDA_ERROR_NO_DEVICE with only them visible): suspects, which the GPU's own fault or
    the sandbox's. None where CUDA failed as a whole (no libcuda, a driver mismatch) or a
    UUID cannot be matched (the old MIG form)."""
    found = _answer(done.stdout)
    if found is None or not all(uuid_hex(uuid) for uuid in uuids):
        return []
    if "error" in found:
        return list(uuids) if NO_DEVICE in found["error"] else []
    visible = {d["uuid"] for d in found["devices"]}
    return [uuid for uuid in uuids if uuid_hex(uuid) not in visible]


def host_summary(done: subprocess.CompletedProcess, gpus: Sequence) -> str:
    """The probe's run on the host itself (no sandbox, every GPU visible), in an
    administrator's words, for the infrastructure's status; `gpus` are NVML's (`GpuInfo`),
    and a whole GPU NVML lists that CUDA does not see is named."""
    found = _answer(done.stdout)
    if found is None:
        return f"The GPU check cannot run here ({_why(done)}): workspaces with GPUs fail it."
    if "error" in found:
        return f"CUDA cannot use them here ({found['error']}): workspaces with GPUs fail it."
    names = Counter(d["name"] for d in found["devices"])
    seen = ", ".join(f"{n}× {name}" for name, n in sorted(names.items())) or "no device"
    # A MIG-enabled GPU shows as its MIG devices, if at all: only whole GPUs are compared.
    visible = seen_uuids(done)
    unseen = [
        f"GPU {gpu.index} ({gpu.uuid})"
        for gpu in gpus
        if not gpu.mig_enabled and uuid_hex(gpu.uuid) and uuid_hex(gpu.uuid) not in visible
    ]
    if unseen:
        return (
            f"CUDA initialises here and sees {seen}, but not {', '.join(unseen)}: "
            "a workspace given it fails its GPU check."
        )
    return f"CUDA initialises here and sees {seen}."


def _why(done: subprocess.CompletedProcess) -> str:
    """Why a probe gave no answer: the last line of its errors, else its exit status."""
    return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]


def _answer(stdout: str) -> dict | None:
    """The probe's last line as it prints it (an error, or devices with a name and a
    UUID each); None for anything else."""
    try:
        found = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None
    if not isinstance(found, dict):
        return None
    if isinstance(found.get("error"), str):
        return found
    devices = found.get("devices")
    if isinstance(devices, list) and all(
        isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("uuid"), str)
        for d in devices
    ):
        return found
    return None
