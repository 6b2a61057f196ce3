"""The `genserve` command for people and scripts, built on the client only (the public API, nothing else).

Tables and a live progress bar for people (rich, the `cli` extra); `--json` on every command for scripts (one JSON
document on stdout; errors as the server's problem body on stderr). Exit codes: 0 done, 1 an API error or a training
that failed or was canceled, 2 a usage error, 130 interrupted (the training, when one was followed, detached or
canceled as asked). The server's own commands (`serve`, `worker`, `dev`, `keys`) run the server when it is installed
in the same environment, so that one `genserve` command does both.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .client import Client, Training
from .errors import GenserveError, ProblemError, TrainingCanceled, TrainingFailed
from .types import Event

SERVER_COMMANDS = (
    "serve",
    "worker",
    "dev",
    "keys",
)  # the server's (genserve.py; the repository's tests hold them equal)
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LIST_LIMIT = 50  # rows a people's table shows unless --limit says otherwise


@dataclass
class Output:
    """Where results go: JSON on stdout for scripts, tables and messages (on stderr, for the progress) for people."""

    as_json: bool

    def result(self, data: Any, human: Callable[[], None]) -> None:
        if self.as_json:
            json.dump(data, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            human()

    def error(self, exc: GenserveError) -> None:
        if self.as_json and isinstance(exc, ProblemError):
            json.dump(exc.body, sys.stderr, default=str)
            sys.stderr.write("\n")
        else:
            _console(stderr=True).print(f"[bold red]error:[/] {_escape(str(exc))}")


def _rich() -> Any:
    try:
        import rich
    except ImportError:
        sys.exit("genserve: the command line needs the `cli` extra: pip install 'genserve-client[cli]'")
    return rich


def _console(stderr: bool = False) -> Any:
    _rich()
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return str(escape(text))


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, no_wrap=i == 0)  # ids whole, whatever the width
    for row in rows:
        table.add_row(*("" if v is None else _escape(str(v)) for v in row))
    _console().print(table)


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else ""


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    """`--set key=value` pairs, each value read as JSON when it parses (numbers, true/false, null, lists, objects)
    and as a string otherwise, so `--set steps=300 --set gan_loss=hinge` needs no quoting."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--set takes key=value, not {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _limited(items: Iterable[Any], limit: int) -> list[Any]:
    taken: list[Any] = []
    for item in items:
        if len(taken) == limit:
            break
        taken.append(item)
    return taken


# --- commands -------------------------------------------------------------------------------------------------------
def cmd_upload(client: Client, out: Output, args: argparse.Namespace) -> int:
    dataset = client.datasets.upload(args.file, name=args.name or Path(args.file).stem)
    out.result(
        dict(dataset.record),
        lambda: _console().print(
            f"dataset [bold]{dataset.id}[/] ({_escape(dataset.name)}): {dataset.size} {dataset.kind}, "
            f"shape {list(dataset.shape)}"
            + (f", classes {list(dataset.classes)}" if dataset.classes else "")
            + (f"\n{_escape(dataset.note)}" if dataset.note else "")
        ),
    )
    return EXIT_OK


def cmd_train(client: Client, out: Output, args: argparse.Namespace) -> int:
    options = _options(args.set or [])
    for name in ("steps", "model_name", "priority"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.conditional:
        options["conditional"] = True
    training = client.trainings.create(args.dataset, args.family, **options)
    if not args.follow:
        out.result(
            training.record,
            lambda: _console().print(
                f"training [bold]{training.id}[/] {training.status}; follow it with: genserve follow {training.id}"
            ),
        )
        return EXIT_OK
    return _follow(client, out, training, args.on_interrupt)


def cmd_follow(client: Client, out: Output, args: argparse.Namespace) -> int:
    return _follow(client, out, client.trainings.get(args.training), args.on_interrupt)


def _follow(client: Client, out: Output, training: Training, on_interrupt: str) -> int:
    """Follow a training to its end with a progress bar (people, on a terminal) or silently (--json): exit 0 with the
    model on success, 1 on failure or cancel; on Ctrl-C, cancel it or detach (asked, unless --on-interrupt says)."""
    bar = None if out.as_json else ProgressBar(training)
    try:
        if bar is not None:
            bar.start()
        try:
            model = training.wait(progress=bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.stop()
    except KeyboardInterrupt:
        return _interrupted(out, training, on_interrupt)
    except (TrainingFailed, TrainingCanceled) as exc:
        ended: GenserveError = exc
        training.refresh()
        out.result(training.record, lambda: out.error(ended))
        return EXIT_ERROR
    summary = {**training.record, "model": dict(model.record)}
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in model.metrics.items() if isinstance(v, int | float))
    out.result(
        summary,
        lambda: _console().print(
            f"[green]succeeded[/]: model [bold]{model.id}[/]"
            + (f" ({model.name}:{model.version})" if model.name else "")
            + (f"\n{_escape(metrics)}" if metrics else "")
            + f"\nsample it: genserve sample {model.id} -n 64 --format grid -o samples.png"
        ),
    )
    return EXIT_OK


def _interrupted(out: Output, training: Training, on_interrupt: str) -> int:
    choice = on_interrupt
    if choice == "ask":
        if not sys.stdin.isatty():
            choice = "detach"
        else:
            try:
                answer = input(f"\nCancel training {training.id}? [y/N] ").strip().lower()
            except (EOFError, KeyboardInterrupt):
                answer = ""
            choice = "cancel" if answer in ("y", "yes") else "detach"
    if choice == "cancel":
        training.cancel()
        message = f"canceling training {training.id}"
    else:
        message = f"detached; training {training.id} goes on (genserve follow {training.id})"
    print(message, file=sys.stderr)
    out.result(training.record, lambda: None)
    return EXIT_INTERRUPTED


class ProgressBar:
    """Step / total steps, losses, ETA and phase of one training, live on the terminal (rich's Progress, on stderr
    so that stdout stays the result). Fed by `Training.wait`'s callback: events, or the handle itself when polling."""

    def __init__(self, training: Training) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.training = training
        self.progress = Progress(
            TextColumn("[bold]{task.fields[status]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}"),
            console=_console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task(training.id, total=None, status=training.status, detail="")

    def start(self) -> None:
        self.progress.start()
        self.update(self.training)

    def stop(self) -> None:
        self.progress.stop()

    def update(self, seen: Training | Event) -> None:
        state = self.training  # the handle follows the events itself; read its record, whatever was seen
        progress = state.progress
        detail = ""
        if progress is not None:
            losses = " ".join(f"{k} {v:.3f}" for k, v in progress.losses.items())
            detail = " ".join(filter(None, [progress.phase if progress.phase != "train" else None, losses]))
            self.progress.update(self.task, total=progress.total_steps, completed=progress.step)
        if isinstance(seen, Event) and seen.event == "preview":
            detail = f"{detail} (preview at step {seen.data.get('step')})".strip()
        self.progress.update(self.task, status=state.status, detail=_escape(detail))


def cmd_sample(client: Client, out: Output, args: argparse.Namespace) -> int:
    labels = [int(v) for v in args.labels.split(",")] if args.labels else None
    options = {"scale": args.scale} if args.scale else {}
    samples = client.models.sample(args.model, args.n, seed=args.seed, labels=labels, format=args.format, **options)
    if args.output == "-":
        sys.stdout.buffer.write(samples.content)
        return EXIT_OK
    path = Path(args.output or f"samples.{_extension(samples.format)}")
    path.write_bytes(samples.content)
    out.result(
        {"path": str(path), "bytes": len(samples.content), "format": samples.format, "seed": samples.seed},
        lambda: _console().print(
            f"{len(samples.content):,} bytes of {samples.format} to {_escape(str(path))}"
            + (f" (seed {samples.seed})" if samples.seed is not None else "")
        ),
    )
    return EXIT_OK


def _extension(fmt: str) -> str:
    return {"grid": "png", "png": "json", "json": "json", "npy": "npy"}.get(fmt, "bin")


def cmd_ls(client: Client, out: Output, args: argparse.Namespace) -> int:
    limit = args.limit or LIST_LIMIT
    if args.resource == "datasets":
        datasets = _limited(client.datasets.list(kind=args.kind), limit)
        out.result(
            [dict(d.record) for d in datasets],
            lambda: _table(
                "datasets",
                ["id", "name", "kind", "size", "shape", "classes"],
                [(d.id, d.name, d.kind, d.size, list(d.shape), len(d.classes or ())) for d in datasets],
            ),
        )
    elif args.resource == "trainings":
        trainings = _limited(client.trainings.list(status=args.status, dataset=args.dataset), limit)

        def row(t: Training) -> Sequence[Any]:
            p = t.progress
            return (
                t.id,
                t.status,
                t.request.get("dataset"),
                t.request.get("family"),
                f"{p.step}/{p.total_steps}" if p else "",
                t.model_id,
            )

        out.result(
            [t.record for t in trainings],
            lambda: _table("trainings", ["id", "status", "dataset", "family", "step", "model"], map(row, trainings)),
        )
    else:
        models = _limited(client.models.list(dataset=args.dataset, model_name=args.name, tag=args.tag), limit)
        out.result(
            [dict(m.record) for m in models],
            lambda: _table(
                "models",
                ["id", "name", "family", "dataset", "kind", "created"],
                [
                    (m.id, f"{m.name}:{m.version}" if m.name else "", m.family, m.dataset, m.kind, _when(m.created_at))
                    for m in models
                ],
            ),
        )
    return EXIT_OK


def cmd_cancel(client: Client, out: Output, args: argparse.Namespace) -> int:
    training = client.trainings.cancel(args.training)
    out.result(training.record, lambda: _console().print(f"training {training.id}: {training.status}"))
    return EXIT_OK


def cmd_open(client: Client, out: Output, args: argparse.Namespace) -> int:
    """The web UI's page of a model (or of a training, for a `tr_` id): printed, for a browser to open."""
    ref = args.ref
    kind = "trainings" if ref.startswith("tr_") else "models"
    getattr(client, kind).get(ref)  # a 404 here, not in the browser
    url = f"{client.url}/ui#/{kind}/{ref}"
    out.result({"url": url}, lambda: print(url))
    return EXIT_OK


def cmd_alias(client: Client, out: Output, args: argparse.Namespace) -> int:
    """`NAME@ALIAS` pointed at a version, or removed with --delete."""
    name, _, alias = args.target.partition("@")
    if not alias:
        raise argparse.ArgumentTypeError(f"alias takes NAME@ALIAS, not {args.target!r}")
    if args.delete:
        client.model_names.delete_alias(name, alias)
        out.result({"name": name, "alias": alias, "deleted": True}, lambda: print(f"{name}@{alias} removed"))
        return EXIT_OK
    if args.version is None:
        raise argparse.ArgumentTypeError("alias needs a VERSION (or --delete)")
    entry = client.model_names.set_alias(name, alias, args.version)
    out.result(dict(entry.record), lambda: print(f"{name}@{alias} -> version {args.version}"))
    return EXIT_OK


def cmd_names(client: Client, out: Output, args: argparse.Namespace) -> int:
    names = client.model_names.list()
    out.result(
        [dict(n.record) for n in names],
        lambda: _table(
            "model names",
            ["name", "versions", "aliases"],
            [(n.name, len(n.versions), ", ".join(f"{a}->{v}" for a, v in n.aliases.items())) for n in names],
        ),
    )
    return EXIT_OK


def cmd_completion(parser: argparse.ArgumentParser, shell: str) -> int:
    try:
        import shtab
    except ImportError:
        sys.exit("genserve: completion needs the `cli` extra: pip install 'genserve-client[cli]'")
    print(shtab.complete(parser, shell=shell))
    return EXIT_OK


# --- the parser -----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genserve",
        description="Train VAEs and GANs and draw samples from a genserve service. Server commands: "
        + ", ".join(SERVER_COMMANDS)
        + " (when the server is installed; `genserve serve --help`).",
    )
    parser.add_argument("--version", action="version", version=f"genserve-client {__version__}")
    parser.add_argument("--url", default=None, help="the service (default $GENSERVE_URL, else http://127.0.0.1:8000)")
    parser.add_argument("--api-key", default=None, help="an API key (default $GENSERVE_API_KEY)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("upload", help="upload a dataset (.csv, .npz, or .zip of images)")
    up.add_argument("file", type=Path)
    up.add_argument("--name", help="its name (default: the file's name)")

    tr = sub.add_parser("train", help="start a training")
    tr.add_argument("dataset", help="a dataset id or name (built-ins: ring2d, grid2d, moons2d, digits, mnist, shapes)")
    tr.add_argument("--family", choices=("gan", "vae"), required=True)
    tr.add_argument("--steps", type=int)
    tr.add_argument("--conditional", action="store_true", help="condition on the dataset's labels")
    tr.add_argument("--model-name", help="publish the model as this name's next version")
    tr.add_argument("--priority", choices=("high", "normal", "low"))
    tr.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other option (repeatable)")
    tr.add_argument("--follow", action="store_true", help="show its progress until it ends")
    for p in (tr, fo := sub.add_parser("follow", help="follow a training until it ends")):
        p.add_argument(
            "--on-interrupt",
            choices=("ask", "cancel", "detach"),
            default="ask",
            help="on Ctrl-C: ask (default; detach when not on a terminal), cancel the training, or detach",
        )
    fo.add_argument("training", help="a training id")

    sa = sub.add_parser("sample", help="draw samples from a model")
    sa.add_argument("model", help="a model id, NAME:VERSION or NAME@ALIAS")
    sa.add_argument("-n", type=int, default=None, help="how many (default 1)")
    sa.add_argument("--seed", type=int)
    sa.add_argument("--labels", help="class per sample, comma-separated (conditional models)")
    sa.add_argument("--format", choices=("grid", "png", "npy", "json"), default="grid")
    sa.add_argument("--scale", type=int, help="grid only: draw each pixel as a scale x scale block")
    sa.add_argument("-o", "--output", help="file to write (default samples.<ext>; - for stdout)")

    for resource in ("datasets", "trainings", "models"):
        group = sub.add_parser(resource, help=f"list {resource}")
        ls = group.add_subparsers(dest="action", required=True, metavar="ACTION").add_parser("ls", help="list")
        ls.set_defaults(resource=resource)
        ls.add_argument("--limit", type=int, help=f"at most this many (default {LIST_LIMIT})")
        if resource == "datasets":
            ls.add_argument("--kind", choices=("points", "images"))
        else:
            ls.add_argument("--dataset")
        if resource == "trainings":
            ls.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "canceled"))
        if resource == "models":
            ls.add_argument("--name", help="versions of this model name")
            ls.add_argument("--tag", help="KEY=VALUE, or KEY for any value")

    ca = sub.add_parser("cancel", help="cancel a training")
    ca.add_argument("training")
    op = sub.add_parser("open", help="print the web UI's address of a model or training")
    op.add_argument("ref", help="a model id, NAME:VERSION, NAME@ALIAS, or a training id")
    sub.add_parser("names", help="list model names, their versions and aliases")
    al = sub.add_parser("alias", help="point NAME@ALIAS at a version")
    al.add_argument("target", help="NAME@ALIAS")
    al.add_argument("version", type=int, nargs="?")
    al.add_argument("--delete", action="store_true", help="remove the alias")
    co = sub.add_parser("completion", help="print a shell completion script")
    co.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    for name in SERVER_COMMANDS:
        sub.add_parser(name, help=f"(server) genserve {name} --help", add_help=False)
    return parser


COMMANDS: dict[str, Callable[[Client, Output, argparse.Namespace], int]] = {
    "upload": cmd_upload,
    "train": cmd_train,
    "follow": cmd_follow,
    "sample": cmd_sample,
    "datasets": cmd_ls,
    "trainings": cmd_ls,
    "models": cmd_ls,
    "cancel": cmd_cancel,
    "open": cmd_open,
    "names": cmd_names,
    "alias": cmd_alias,
}


def run_server_command(argv: list[str]) -> int:
    try:  # the server's command module (genserve.py), installed with the server; imported by name so that the
        # client's type check does not follow it into the server
        genserve = importlib.import_module("genserve")
    except ImportError:
        print(f"genserve {argv[0]}: the server is not installed here (pip install genserve)", file=sys.stderr)
        return EXIT_USAGE
    return int(genserve.main(argv))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SERVER_COMMANDS:
        return run_server_command(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "completion":
        return cmd_completion(parser, args.shell)
    _rich()
    out = Output(as_json=args.json)
    url = args.url or os.environ.get("GENSERVE_URL")
    try:
        with Client(url, api_key=args.api_key, timeout=args.timeout) as client:
            return COMMANDS[args.command](client, out, args)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except GenserveError as exc:
        out.error(exc)
        return EXIT_ERROR
    except OSError as exc:  # a file to upload or write
        out.error(GenserveError(str(exc)))
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
