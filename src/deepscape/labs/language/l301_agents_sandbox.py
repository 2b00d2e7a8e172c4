"""language/301/agents' Python sandbox: run code an LLM wrote, in a child process that is fenced in.

An agent that writes code must not be trusted with the machine. Without root (no namespaces,
no seccomp filter set up by hand) a child process can still be fenced in layers:

1. The process. `python -I -S`: isolated mode (no PYTHON* variables, no user site, the script's
   folder not on sys.path) without `site` (no site-packages: the standard library alone). Its
   environment is a new one with nothing inherited (no tokens or paths of the parent); its
   working folder a fresh temporary one, deleted afterwards.
2. The kernel's limits (`resource.setrlimit`, set in the child before Python starts): address
   space (memory), CPU seconds, file size (stdout goes to a file, so an endless print ends too),
   open files and processes (RLIMIT_NPROC does not bind root: the audit hook below is what stops
   a fork bomb there). A new session (`setsid`), so that on a timeout the whole process group is
   killed, children included.
3. An audit hook (PEP 578, `sys.addaudithook`), installed before the code runs; it cannot be
   removed from Python. It refuses, with a PermissionError naming the rule: sockets (no
   network), starting processes (subprocess, os.system, fork, exec, spawn), signals to other
   processes, ctypes (which could call anything), and files outside the working folder — any
   write, and reads except the Python standard library's.

An audit hook is defence in depth, not a proof: CPython's own docs say it is no sandbox against
code written to escape it on purpose (a C extension could). Here the code comes from a 135M
model; the limits and the fresh folder are what would contain the rest.

    result = Sandbox(seconds=2).run("print(sum(range(10)))")
    result.ok, result.output          # True, '45'
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# the child's program: it reads the user's code from stdin, installs the hook, then runs it
RUNNER = r"""
import os, sys
code = sys.stdin.read()
HOME = os.path.realpath(os.getcwd())
READABLE = tuple(os.path.realpath(p) for p in sys.argv[1:]) + (HOME,)
DEVICES = ("/dev/null", "/dev/urandom", "/dev/zero")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PROCESSES = ("subprocess.Popen", "os.system", "os.fork", "os.forkpty", "os.posix_spawn",
             "os.exec", "os.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "pty.spawn",
             "os.startfile")
PATHS = {"os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,),
         "os.chmod": (0,), "os.chown": (0,), "os.link": (0, 1), "os.symlink": (0, 1),
         "os.truncate": (0,), "os.utime": (0,), "os.chdir": (0,), "shutil.rmtree": (0,),
         "shutil.copyfile": (1,), "shutil.move": (1,)}
LISTING = ("os.listdir", "os.scandir")
MODULES = ("_posixsubprocess", "_ctypes", "_socket", "_multiprocessing")  # raw process, C, net
for name in MODULES:
    sys.modules.pop(name, None)
SELF = os.getpid()


def inside(path, places):
    if isinstance(path, int):  # a file descriptor already opened
        return True
    real = os.path.realpath(os.fsdecode(path))
    return any(real == p or real.startswith(p.rstrip("/") + "/") for p in places)


def refuse(rule, detail=""):
    raise PermissionError(f"sandbox: {rule} is not allowed" + (f" ({detail})" if detail else ""))


def hook(event, args):
    if event.startswith("socket."):
        refuse("network access", event)
    if event.startswith("ctypes."):
        refuse("ctypes", event)
    if event in PROCESSES or event.startswith(("os.exec", "os.spawn", "os.posix_spawn")):
        if event in ("os.kill", "os.killpg") and args and args[0] == SELF:
            return
        refuse("starting or signalling processes", event)
    if event == "import" and args and args[0] in MODULES:
        refuse(f"importing {args[0]}", "processes, C calls and sockets go through it")
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        if path is None or isinstance(path, int):
            return
        writing = any(m in (mode or "") for m in "wax+") or bool((flags or 0) & WRITE_FLAGS)
        if writing and not inside(path, (HOME,)):
            refuse("writing outside the working folder", os.fsdecode(path))
        if not writing and not inside(path, READABLE + DEVICES):
            refuse("reading outside the working folder and the standard library",
                   os.fsdecode(path))
    elif event in PATHS:
        for i in PATHS[event]:
            if i < len(args) and args[i] is not None and not inside(args[i], (HOME,)):
                refuse(f"{event} outside the working folder", os.fsdecode(args[i]))
    elif event in LISTING and args and args[0] not in (None, ".") and not inside(
            args[0], READABLE):
        refuse("listing folders outside the working folder", os.fsdecode(args[0]))


sys.addaudithook(hook)
os.environ.clear()  # nothing to read, not even what Python itself set
exec(compile(code, "<agent>", "exec"), {"__name__": "__main__"})
"""


@dataclass
class Result:
    """What a run of code gave: its printed output and errors, its exit code, and a one-line
    `error` when it failed (the exception's last line, or the limit it ran into)."""

    output: str
    errors: str
    returncode: int
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def observation(self, limit: int = 300) -> str:
        """What an agent is shown: the output, or the error."""
        text = self.output.strip() if self.ok else f"Error: {self.error}"
        return text[:limit] or "(nothing printed: use print)"


@dataclass
class Sandbox:
    """Runs Python code in a fenced child process (see the module's docstring)."""

    seconds: float = 2.0  # wall-clock limit; the CPU limit is its ceiling + 1
    memory_mb: int = 256  # address space
    file_mb: int = 1  # the largest file it may write (its printed output included)
    output_chars: int = 4000  # kept of what it prints

    def limits(self) -> None:
        """Run in the child before Python starts (preexec_fn): the kernel's limits."""
        cpu = int(self.seconds) + 1
        for kind, value in [(resource.RLIMIT_AS, self.memory_mb * 2**20),
                            (resource.RLIMIT_CPU, cpu),
                            (resource.RLIMIT_FSIZE, self.file_mb * 2**20),
                            (resource.RLIMIT_NOFILE, 64),
                            (resource.RLIMIT_NPROC, 32),
                            (resource.RLIMIT_CORE, 0)]:  # fmt: skip
            resource.setrlimit(kind, (value, value))

    def run(self, code: str, folder: Path | None = None) -> Result:
        """Run `code` in `folder` (default: a new temporary folder, deleted afterwards)."""
        own = folder is None
        work = Path(tempfile.mkdtemp(prefix="deepscape-sandbox-")) if own else Path(folder)
        stdlib = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
        command = [sys.executable, "-I", "-S", "-c", RUNNER, *sorted(stdlib)]
        started = time.perf_counter()
        try:
            with (work / ".stdout").open("w+b") as out, (work / ".stderr").open("w+b") as err:
                child = subprocess.Popen(
                    command, cwd=work, env={}, stdin=subprocess.PIPE, stdout=out, stderr=err,
                    preexec_fn=self.limits, start_new_session=True,
                )  # fmt: skip
                timed_out = False
                try:
                    child.communicate(code.encode(), timeout=self.seconds)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(child.pid, signal.SIGKILL)  # the group: children too
                    child.wait()
                except BrokenPipeError:  # it ended before reading its code
                    child.wait()
                with contextlib.suppress(
                    ProcessLookupError, PermissionError
                ):  # anything it left in its group
                    os.killpg(child.pid, signal.SIGKILL)
                seconds = time.perf_counter() - started
                output = _read(out, self.output_chars)
                errors = _read(err, self.output_chars)
        finally:
            if own:
                shutil.rmtree(work, ignore_errors=True)
        error = _why(child.returncode, errors, timed_out, self)
        return Result(output, errors, child.returncode, seconds, error)


def _read(file: object, limit: int) -> str:
    file.seek(0)  # type: ignore[attr-defined]
    return file.read(limit * 4).decode("utf-8", "replace")[:limit]  # type: ignore[attr-defined]


def _why(code: int, errors: str, timed_out: bool, box: Sandbox) -> str:
    """One line saying why the code failed ('' when it did not)."""
    if timed_out:
        return f"stopped after {box.seconds:g} s (the time limit)"
    if code == -signal.SIGXCPU:
        return f"stopped after {int(box.seconds) + 1} s of CPU (the CPU limit)"
    if code == -signal.SIGXFSZ:
        return f"stopped: it wrote more than {box.file_mb} MB (the file size limit)"
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    if code:
        lines = [line for line in errors.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {code}"
        if "File too large" in last:
            return f"stopped: it wrote more than {box.file_mb} MB (the file size limit)"
        if last.startswith("MemoryError"):
            return f"MemoryError: more than {box.memory_mb} MB (the memory limit)"
        return last
    return ""
