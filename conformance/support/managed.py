"""Managed mode: the suite starts its own nats-server (a temporary store,
every write synced, a free port) and `jetsource run` against it as child
processes, restarts either when a test asks, and ends both at the end."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

# Bounds on waiting for a child to start or stop; a child that takes longer
# fails the suite instead of hanging it.
START_WAIT = 60.0
STOP_WAIT = 30.0

READY_LINE = "jetsource ready"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """One child process whose stderr (and stdout) go to a log file, read
    line by line so a marker line can be waited for."""

    def __init__(self, name: str, argv: list, env: dict, cwd: Path, log: Path):
        self.name = name
        self.log_path = log
        self._lines = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, marker: str, since: int = 0, within: float = START_WAIT) -> None:
        deadline = time.monotonic() + within
        with self._cond:
            while True:
                if any(marker in line for line in self._lines[since:]):
                    return
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before "
                                       f"{marker!r}; log: {self.log_path}\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.name}: no {marker!r} within {within} s; "
                                       f"log: {self.log_path}\n{self.tail()}")
                self._cond.wait(min(left, 0.2))

    def line_count(self) -> int:
        with self._cond:
            return len(self._lines)

    def tail(self, n: int = 30) -> str:
        with self._cond:
            return "".join(self._lines[-n:])

    def stop(self, sig=signal.SIGTERM, within: float = STOP_WAIT) -> int:
        """Sends `sig` and waits for the exit (SIGKILL after `within`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(within)
        self._reader.join(within)
        return self.proc.returncode


class Managed:
    """A nats-server and a `jetsource run` the suite owns."""

    def __init__(self, jetsource_bin: str, nats_server_bin: str, subject_prefix: str = "",
                 max_payload: Optional[int] = None):
        self.jetsource_bin = str(Path(jetsource_bin).resolve())
        self.nats_server_bin = str(Path(nats_server_bin).resolve())
        self.subject_prefix = subject_prefix
        self.dir = Path(tempfile.mkdtemp(prefix="jetsource-conformance-"))
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.nats = None
        self.jetsource = None
        self.starts = 0
        self.config = self.dir / "nats-server.conf"
        # nats-server's defaults but for the store: a folder of its own, and
        # every write synced (as jetsource recommends). max_payload stays at
        # nats-server's default (1 MiB), which jetsource's max_body fits under,
        # unless `max_payload` is given: then max_body is half of it.
        self.config.write_text(
            "host: 127.0.0.1\n"
            f"port: {self.port}\n"
            + (f"max_payload: {max_payload}\n" if max_payload else "")
            + "jetstream {\n"
            f"  store_dir: \"{self.dir / 'store'}\"\n"
            "  sync_interval: always\n"
            "}\n",
            encoding="utf-8",
        )
        self.settings = None
        if max_payload:
            self.settings = self.dir / "jetsource.toml"
            self.settings.write_text(f"[handlers]\nmax_body = \"{max_payload // 2}\"\n",
                                     encoding="utf-8")

    def start(self):
        self.start_nats_server()
        self.start_jetsource()
        return self

    def start_nats_server(self):
        self.nats = Child("nats-server", [self.nats_server_bin, "-c", str(self.config)],
                          dict(os.environ), self.dir, self.dir / "nats-server.log")
        self.nats.wait_for_line("Server is ready")

    def jetsource_env(self) -> dict:
        # Only the suite's settings: none of the caller's JETSOURCE_* or
        # NATS_URL, and no config file (the working folder has none).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("JETSOURCE_") and k != "NATS_URL"}
        if self.settings is not None:
            env["JETSOURCE_CONFIG"] = str(self.settings)
        env["RUST_LOG"] = "info"
        env["NO_COLOR"] = "1"
        return env

    def jetsource_argv(self) -> list:
        argv = [self.jetsource_bin, "run", "--nats-url", self.url]
        if self.subject_prefix:
            argv += ["--subject-prefix", self.subject_prefix]
        return argv

    def start_jetsource(self):
        self.starts += 1
        self.jetsource = Child(f"jetsource (start {self.starts})", self.jetsource_argv(),
                               self.jetsource_env(), self.dir, self.dir / "jetsource.log")
        self.jetsource.wait_for_line(READY_LINE)

    def restart_jetsource(self, sig=signal.SIGTERM) -> int:
        """Stops jetsource with `sig`, starts it again, waits until it is
        ready; returns the old process's exit status."""
        code = self.jetsource.stop(sig)
        self.start_jetsource()
        return code

    def restart_nats_server(self, sig=signal.SIGTERM) -> int:
        """Stops nats-server with `sig` and starts it on the same store and port."""
        code = self.nats.stop(sig)
        self.start_nats_server()
        return code

    def jetsource_running(self) -> bool:
        return self.jetsource is not None and self.jetsource.proc.poll() is None

    def logs(self, n: int = 40) -> str:
        """The last lines of both children's logs."""
        parts = []
        for child in (self.jetsource, self.nats):
            if child is not None:
                parts.append(f"--- {child.name}, last lines of {child.log_path}:\n{child.tail(n)}")
        return "\n".join(parts)

    def close(self, keep: bool = False):
        """Ends both children; removes the store and logs unless `keep`."""
        for child in (self.jetsource, self.nats):
            if child is not None:
                child.stop(signal.SIGTERM)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
