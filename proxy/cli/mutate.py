"""`pseudowa cassette mutate NAME --out NEW|--in-place <operation> ...`: one subcommand per
entry of `pseudowa.proxy.cassette.mutations.OPERATIONS`, generated from it, each printing
one line.

EVENT is an index as `pseudowa cassette show` lists events (`#3` or `3`) or a wamid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pseudowa.proxy.cassette.mutations import OPERATIONS
from pseudowa.proxy.cassette.mutations import apply
from pseudowa.proxy.cassette.operations import REQUIRED
from pseudowa.proxy.cassette.operations import Operation
from pseudowa.proxy.cassette.operations import Param
from pseudowa.proxy.cassette.operations import Variant
from pseudowa.proxy.cli.options import OneLineGroup
from pseudowa.proxy.errors import UserError
from pseudowa.storage.store import CassetteStore

EVENT_HELP = "EVENT is an index as `cassette show` lists events (#3 or 3), or a wamid."


class _MutateGroup(OneLineGroup):
    """`mutate NAME --out NEW <operation> ...`: the group's own options may follow NAME.

    A group stops parsing its options at its first argument (the rest belongs to the
    subcommand), so the options right after NAME are moved in front of it.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        self._operation_help(ctx, args)
        if args and not args[0].startswith("-"):
            takes_value = {
                opt
                for p in self.params
                if isinstance(p, click.Option) and not p.is_flag
                for opt in p.opts
            }
            name, rest, moved = args[0], list(args[1:]), []
            while rest and rest[0].startswith("-"):
                opt = rest.pop(0)
                moved.append(opt)
                if opt in takes_value and rest:
                    moved.append(rest.pop(0))
            args = [*moved, name, *rest]
        return super().parse_args(ctx, args)

    def _operation_help(self, ctx: click.Context, args: list[str]) -> None:
        """`mutate set --help` (no NAME, no --out): print that operation's own help.

        Without this "set" would be taken for NAME and --help for the group's option.
        Once --out, --in-place or --db is given, the first word is NAME as usual.
        """
        own = {opt for p in self.params if isinstance(p, click.Option) for opt in p.opts}
        helps = set(ctx.help_option_names)
        if not args or not helps & set(args) or own & set(args):
            return
        sub = ctx
        for word in args:  # one context per level, so the usage line names the path
            group = sub.command
            if not isinstance(group, click.Group) or word not in group.commands:
                break
            sub = click.Context(group.commands[word], info_name=word, parent=sub)
        if sub is ctx:
            return
        click.echo(sub.command.get_help(sub), color=ctx.color)
        ctx.exit(0)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["NAME", "--out NEW|--in-place", "[--db URL]", "COMMAND [ARGS]..."]


@click.group("mutate", cls=_MutateGroup, epilog=EVENT_HELP)
@click.argument("name")
@click.option(
    "--out",
    metavar="NEW",
    default=None,
    help="Write the result to a new cassette NEW (a copy of NAME, then changed).",
)
@click.option("--in-place", is_flag=True, help="Change cassette NAME itself.")
@click.option(
    "--db",
    "db",
    metavar="URL",
    default=None,
    help="Store URL (SQLAlchemy form). Default: $PSEUDOWA_DB, else the default store.",
)
@click.pass_context
def mutate_group(
    ctx: click.Context, name: str, out: str | None, in_place: bool, db: str | None
) -> None:
    """Craft edge cases from cassette NAME by WhatsApp meaning: duplicate, drop, reorder,
    delay or edit webhooks, swap media, fail statuses, add messages, break signatures.

    Every operation appends itself to the history of the cassette it writes.
    """
    ctx.obj = {"name": name, "out": out, "in_place": in_place, "db": db}


def _run(op: Operation, values: dict[str, Any]) -> None:
    """Open the store, apply the mutation to NAME (--out or --in-place), print one line."""
    ctx = click.get_current_context()
    opts = ctx.find_object(dict) or {}
    out, in_place = opts.get("out"), opts.get("in_place", False)
    if in_place and out:
        raise UserError("give --out NEW or --in-place, not both")
    if not in_place and not out:
        raise UserError("give --out NEW (a new cassette to write) or --in-place")
    url = opts.get("db") or ctx.find_root().params.get("db")
    with CassetteStore.open(url) as store:
        result = apply(op, store, opts["name"], values, out=out, in_place=in_place)
    click.echo(result.line())


def _type(p: Param) -> click.ParamType[Any] | None:
    """The click type of a parameter: numbers are checked, files must exist."""
    kind = p.cli_kind or p.kind
    if kind == "int":
        return click.INT if p.minimum is None else click.IntRange(min=int(p.minimum))
    if kind == "float":
        return click.FLOAT if p.minimum is None else click.FloatRange(min=p.minimum)
    if kind == "file":
        return click.Path(exists=True, dir_okay=False, path_type=Path)
    return None  # text


def _click_param(p: Param) -> click.Parameter:
    if p.option is None:
        return click.Argument([p.name], type=_type(p))
    if p.kind == "flag":
        return click.Option([p.option, p.name], is_flag=True, help=p.help)
    extra: dict[str, Any] = {"required": True}
    if p.default is not REQUIRED:  # click tells "no default" from a default of None
        extra = {"default": p.default}
    if p.show_default:
        extra["show_default"] = True
    return click.Option([p.option, p.name], type=_type(p), metavar=p.metavar, help=p.help, **extra)


def _one_of(op: Operation, values: dict[str, Any]) -> None:
    """`move takes exactly one of --before EVENT or --after EVENT`, checked first."""
    if op.one_of and sum(values.get(name) is not None for name in op.one_of) != 1:
        shown = " or ".join(
            f"{op.param(name).option} {op.param(name).metavar}" for name in op.one_of
        )
        raise UserError(f"{op.name} takes exactly one of {shown}")


def _command(op: Operation, variant: Variant | None = None) -> click.Command:
    """The subcommand for `op` (or for one variant of it)."""
    if variant is None:
        params = [_click_param(p) for p in op.params]
        name, help = op.name, op.help
    else:
        params = [_click_param(op.param(o) if isinstance(o, str) else o) for o in variant.options]
        name, help = variant.command, variant.help

    def callback(**values: Any) -> None:
        _one_of(op, values)
        if variant is not None and op.variant is not None:
            values = {op.variant: variant.value, **values}
        _run(op, values)

    return click.Command(name, params=params, callback=callback, help=help)


def _register(group: click.Group, op: Operation) -> None:
    if not op.variants:
        group.add_command(_command(op))
        return
    variants = click.Group(op.name, help=op.help, epilog=EVENT_HELP)
    for variant in op.variants:
        variants.add_command(_command(op, variant))
    group.add_command(variants)


for _op in OPERATIONS.values():
    _register(mutate_group, _op)
