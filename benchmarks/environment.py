"""What a run runs on: the device a `--device` flag names, and the git state, package versions and device
recorded in every run record."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

from benchmarks import distributed
from riscore.errors import UserError

PACKAGES = ("torch", "torchvision", "open_clip_torch", "peft", "transformers", "fvcore", "numpy")
REPO = Path(__file__).resolve().parent.parent


def resolve_device(name: str) -> torch.device:
    """The torch device for a `--device` value: auto (CUDA when present), cpu or cuda[:N]."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device here; use --device cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA devices "
                        f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a torch device; use auto, cpu or cuda[:N]") from None


def cuda_index(device: torch.device) -> int:
    """The CUDA device's index: `cuda` alone means the current device, which some torch calls do not accept."""
    return torch.cuda.current_device() if device.index is None else device.index


def git_state() -> dict[str, object]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    """The CPU's marketing name where the OS tells it (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's with the vector instructions torch's kernels use (AVX2 / AVX512: the same
    run is about 3x faster on the latter) and the thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, {torch_threads()})"


def torch_threads() -> str:
    """'1 thread' or 'N threads': torch's CPU thread count, as records and cards state it."""
    threads = torch.get_num_threads()
    return f"{threads} thread{'s' * (threads != 1)}"


def describe(device: torch.device) -> dict[str, object]:
    return {
        **git_state(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "device": device_name(device),
        "device_type": device.type,
        "threads": torch.get_num_threads(),  # CPU float results depend on it (reduction order)
        "world_size": distributed.world_size(),  # processes training data-parallel (torchrun), 1 without
    }
