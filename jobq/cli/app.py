"""The ``jobq`` command group, its context and how errors become one line and an exit code:
0 success; 1 the job failed or was cancelled; 2 usage error, bad input or an unknown id;
3 the job is unfinished; 4 the database cannot be used."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from ..core import __version__
from ..core.errors import ConfigError, JobNotFound, StoreError, ValidationError

if TYPE_CHECKING:
    from ..client.queue import Queue

EXIT_FAILED, EXIT_USAGE, EXIT_UNFINISHED, EXIT_STORE = 1, 2, 3, 4


class CliError(click.ClickException):
    """A one-line error with its own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn jobq exceptions into one clear line and the documented exit code."""
    try:
        yield
    except (ValidationError, ConfigError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except JobNotFound as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except StoreError as exc:
        raise CliError(str(exc), EXIT_STORE) from None


def one_line(text: str) -> str:
    """``text`` with every line break and control character escaped: an error is one line,
    whatever input it quotes."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text.strip())


def parse_arg(text: str) -> Any:
    """A JSON literal; a bare word that is not JSON is a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class Context:
    def __init__(self, db: str | None, config: str | None) -> None:
        self.db = db
        self.config = config
        self._queue: Queue | None = None

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            from ..client.queue import Queue  # imported on first use: `jobq --version` needs none of it

            with api_errors():
                self._queue = Queue(self.db, config=self.config)
        return self._queue


pass_ctx = click.make_pass_decorator(Context)


class JobqGroup(click.Group):
    """Every error, click's usage errors included, is one line on stderr and an exit code."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # plain `jobq`: the help, as usual
                click.echo(exc.format_message())
                sys.exit(0)
            click.echo(f"Error: {one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def backend_line(db: str | None, config: str | None) -> str:
    """``jobq VERSION, backend sqlite (SQLite 3.40.1)`` for the database the command would use
    (``--db``, ``JOBQ_DB``, the config file's ``db``, else ``./jobq.db``), without opening it."""
    if not db:
        path = config or os.environ.get("JOBQ_CONFIG") or ("jobq.toml" if os.path.exists("jobq.toml") else None)
        if path:
            import tomllib

            try:
                with open(path, "rb") as fh:
                    found = tomllib.load(fh).get("db")
                db = found if isinstance(found, str) else None
            except (OSError, ValueError):
                pass
    if (db or "").startswith(("postgres://", "postgresql://")):
        return f"jobq {__version__}, backend postgresql"
    import sqlite3

    return f"jobq {__version__}, backend sqlite (SQLite {sqlite3.sqlite_version})"


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(backend_line(ctx.params.get("db") or os.environ.get("JOBQ_DB"), ctx.params.get("config")))
        ctx.exit()


@click.group(cls=JobqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="JOBQ_DB", is_eager=True, help="Database file (env JOBQ_DB, else the config file, else ./jobq.db).")
@click.option(
    "--config",
    "config",
    envvar="JOBQ_CONFIG",
    is_eager=True,
    type=click.Path(dir_okay=False),
    help="TOML configuration file (env JOBQ_CONFIG, else ./jobq.toml when present).",
)
# Not eager: click processes eager options in command-line order, so an eager --version put
# before --db or --config would not see them. --db and --config are eager, so they are always
# processed first and --version reports their backend, whatever the order. Not package metadata
# either: reading it costs start-up time.
@click.option("--version", is_flag=True, expose_value=False, callback=_version, help="Show version and backend.")
@click.pass_context
def main(ctx: click.Context, db: str | None, config: str | None) -> None:
    """jobq: a durable job queue on one SQLite file."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # targets are importable from here, as with rq and celery
    ctx.obj = Context(db, config)
