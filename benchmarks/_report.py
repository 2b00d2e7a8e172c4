"""Shared by the benchmark scripts: print a table and keep it in docs/benchmarks.md.

Each script owns one section of docs/benchmarks.md (between `<!-- NAME -->` markers) and rewrites
only that section, with the machine, date and command that produced it. Paths in it are written
as a reader would type them from the repository (`../shared/data/sentclf`), never as the folders
of the machine the benchmark ran on.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
REPO = DOC.parents[1]
HEADER = "# Benchmarks\n\nMeasured by the scripts in `benchmarks/`; each section says how.\n"


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def with_overrides(full: list[str], overrides: list[str]) -> list[str]:
    """A benchmark's key=value options with the command line's in place of those it names, so
    that the command written to the doc names each key once."""
    given = {item.split("=", 1)[0] for item in overrides}
    return [*(item for item in full if item.split("=", 1)[0] not in given), *overrides]


def median(values: list[float]) -> float:
    return statistics.median(values)


VECTOR_UNITS = [("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX-512"),
                ("avx2", "AVX2 only")]  # fmt: skip


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        info: dict[str, str] = {}  # the first processor's fields
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
        cpu, flags = info["model name"], set(info.get("flags", "").split())
        # the widest of what decides a CPU's matmul speed: two "AMD EPYC" ran 2.5× apart
        for flag, name in VECTOR_UNITS:
            if flag in flags:
                cpu += f" ({name})"
                break
    except (OSError, KeyError):
        pass
    threads = torch.get_num_threads()
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({threads} thread{'s' if threads > 1 else ''}), Python {platform.python_version()}"
    )


def as_typed(text: str) -> str:
    """`text` with this machine's folders written as from the repository: the repository's own
    path dropped, its parent's written `..`, and a scratch folder's random name dropped (what is
    inside it keeps its name: `data_dir=/tmp/tmpk3j/cifar10-images` → `data_dir=cifar10-images`)."""
    scratch = re.escape(str(Path(tempfile.gettempdir()).resolve()))
    text = re.sub(rf"{scratch}/[^/\s`'\"]+/", "", text)
    return text.replace(f"{REPO}/", "").replace(f"{REPO.parent}/", "../")


def write_section(name: str, title: str, body: str) -> None:
    """Print `body` and put it in docs/benchmarks.md under `title`, replacing the old section."""
    stamp = (
        f"Machine: {machine()}  \nDate: {datetime.date.today()}  \n"
        f"Command: `python {shlex.join([str(Path(sys.argv[0]).resolve()), *sys.argv[1:]])}`\n"
    )
    section = f"<!-- {name} -->\n## {title}\n\n{stamp}\n{body.strip()}\n<!-- /{name} -->\n"
    section = as_typed(section)
    print(section)
    DOC.parent.mkdir(exist_ok=True)
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
    DOC.write_text(text)
