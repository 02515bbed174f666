"""``tricorn [OPTIONS] APP``: the command line, derived from ``tricorn.settings``.

Every option, its default, help and environment variable come from the settings table;
this module only adds ``--version``, the ``APP`` argument and one-line error reporting.

Commands: ``tricorn status --pid FILE`` (``tricorn.cli.status``). The rule that keeps
``tricorn APP`` unambiguous: a first argument that is exactly a command name (``status``)
runs that command; an APP always has the form ``module:attribute``, so it never is one
(a module named ``status`` is served as ``tricorn status:app``).
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from tricorn.cli.status import build_status_command
from tricorn.logs import LOGGING_CONFIG
from tricorn.main import run
from tricorn.settings import CLI_SETTINGS, ENV_PREFIX, Setting

FuncT = Callable[..., Any]


def _version_text() -> str:
    from tricorn import __version__

    return (
        f"Running tricorn {__version__} with {platform.python_implementation()} "
        f"{platform.python_version()} on {platform.system()}"
    )


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_text())
        ctx.exit()


def _show_default(setting: Setting) -> bool | str:
    if setting.doc_default is not None:
        return setting.doc_default
    default = setting.command_line_default
    return setting.flag == "value" and default not in (None, "", ())


def option_for(setting: Setting) -> Callable[[FuncT], FuncT]:
    """The click option of one setting."""
    common: dict[str, Any] = {
        "help": setting.help,
        "envvar": setting.env,
        "default": setting.command_line_default,
        "show_default": _show_default(setting),
    }
    if setting.flag == "flag":
        return click.option(*setting.decls, is_flag=True, **common)
    if setting.flag == "switch":
        return click.option(*setting.decls, **common)
    return click.option(
        *setting.decls,
        type=setting.click_type(),
        multiple=setting.multiple,
        metavar=setting.metavar,
        **common,
    )


class TricornCommand(click.Command):
    """A click command whose errors are one line (``Error: ...``), without the usage."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        command = COMMANDS.get(argv[0]) if argv and self.name == "tricorn" else None
        if command is not None:
            name = f"{prog_name or 'tricorn'} {argv[0]}"
            return command.main(argv[1:], name, complete_var, standalone_mode, **extra)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name or "tricorn", complete_var, False, **extra)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def _serve(app: str, **settings: Any) -> None:
    if settings["log_config"] is None:
        settings["log_config"] = LOGGING_CONFIG
    for name in ("reload_dirs", "reload_includes", "reload_excludes", "headers", "bind"):
        settings[name] = list(settings[name]) or None
    run(app, **settings)


def build_command() -> click.Command:
    """The ``tricorn`` click command, one option per command line setting."""
    callback: FuncT = click.option(
        "--version",
        is_flag=True,
        callback=_print_version,
        expose_value=False,
        is_eager=True,
        help="Show the tricorn, Python and OS versions and exit.",
    )(_serve)
    for setting in reversed(CLI_SETTINGS):
        callback = option_for(setting)(callback)
    callback = click.argument("app", envvar=ENV_PREFIX + "APP")(callback)
    return click.command(
        name="tricorn",
        cls=TricornCommand,
        context_settings={"help_option_names": ["--help"], "max_content_width": 100},
        help="Serve the ASGI (or WSGI) application APP, given as 'module:attribute'.",
        epilog="Also: tricorn status --pid FILE (the workers of a running master).",
    )(callback)


COMMANDS: dict[str, click.Command] = {"status": build_status_command(TricornCommand)}
"""Subcommands, chosen by a first argument equal to their name (see the module note)."""

main = build_command()
