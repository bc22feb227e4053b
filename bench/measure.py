"""What the benchmark measures on the machine: process trees, RSS, CPU, kernel memory.

Everything here reads /proc (Linux): a server's processes are its root process and every
descendant (fleet supervisors spawn workers; multiprocessing adds a resource tracker), RSS is
``VmRSS`` summed over them, CPU is ``utime + stime`` summed over them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PRODUCT_PACKAGES = ("herald_contract", "publisher", "socketsrv", "qasite", "launch")
"""The packages whose uncommitted changes make a measurement "dirty"."""

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def descendants(root: int) -> list[int]:
    """*root* and every live descendant (by parent pid), *root* first."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int(_stat_fields(int(entry.name))[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            out.append(pid)
            todo.extend(children.get(pid, ()))
    return out


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass(frozen=True, slots=True)
class TreeSample:
    pids: tuple[int, ...]
    rss_kib: int
    cpu_s: float
    per_pid_rss_kib: tuple[int, ...]


def sample_tree(root: int) -> TreeSample:
    pids = tuple(descendants(root))
    rss = tuple(rss_kib(p) for p in pids)
    return TreeSample(pids, sum(rss), sum(cpu_s(p) for p in pids), rss)


def kernel_memory_kib() -> dict[str, int]:
    """TCP buffer memory (/proc/net/sockstat ``mem``, pages) and slab memory (/proc/meminfo:
    socket, inode and file objects live there), for the whole machine."""
    out = {"tcp_mem_kib": 0, "slab_kib": 0, "tcp_inuse": 0}
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            parts = line.split()
            out["tcp_mem_kib"] = int(parts[parts.index("mem") + 1]) * PAGE_KIB
            out["tcp_inuse"] = int(parts[parts.index("inuse") + 1])
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            out["slab_kib"] = int(line.split()[1])
    return out


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


SERVER_PACKAGES = ("socketsrv", "herald_contract", "publisher")
"""What a Herald server and its publisher run."""


def server_code_sha() -> str:
    """A digest of the server's packages (:data:`SERVER_PACKAGES`) as they are on disk (what
    a server started now runs), to tell runs of different code apart even without a commit."""
    code = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    files = [path for package in SERVER_PACKAGES for path in root.glob(f"{package}/**/*")]
    for path in sorted(files):
        if path.is_file() and "__pycache__" not in path.parts:
            code.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return code.hexdigest()[:16]


def machine() -> dict[str, object]:
    """The machine and software a result was measured on."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    redis_version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        redis_version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    git = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        root = Path(__file__).resolve().parents[1]
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root,
            timeout=5,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *PRODUCT_PACKAGES],
            capture_output=True, text=True, cwd=root, timeout=5,
        ).stdout.strip()  # fmt: skip
        git = head + (" + uncommitted changes in the product's packages" if dirty else "")
    nofile = ""
    with contextlib.suppress(OSError, ValueError):
        import resource

        nofile = str(resource.getrlimit(resource.RLIMIT_NOFILE))
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "open_files_limit": nofile,
        "redis": redis_version,
        "git": git,
        "server_code_sha256": server_code_sha(),
        "packages": {
            name: _version(name)
            for name in (
                "websockets",
                "uvloop",
                "redis",
                "hiredis",
                "msgpack",
                "python-socketio",
                "python-engineio",
                "uvicorn",
                "matplotlib",
            )
        },
    }


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy since boot (/proc/stat, every core)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_tree_cpu_s() -> float:
    """CPU seconds of this process and everything it started, live or already reaped
    (utime + stime + cutime + cstime over this process and its live descendants)."""
    total = 0.0
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError, IndexError):
            f = _stat_fields(pid)
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / CLK_TCK
    return total


def emit(result: object, out: Path | None) -> None:
    """Print a benchmark's result as JSON, and write it to *out* when given (bench/results)."""
    text = json.dumps(result, indent=2)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    print(text)
