"""The operation registry's vocabulary: what a mutation is, described once.

An `Operation` names a mutation, its plan (`plans.py`) and its typed parameters
(`Param`); `mutations.py` registers one per mutation and makes both the public Python
function and the `pseudowa cassette mutate` subcommand from it. A `Param` carries its
Python form (kind, default, positional or keyword) and how the CLI offers it (option,
help, metavar, range), so neither side restates the other.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Literal

from pseudowa.proxy.cassette.plans import Change
from pseudowa.proxy.cassette.plans import MediaFile
from pseudowa.proxy.cassette.tape import EventRef
from pseudowa.proxy.errors import MutationError

# What a parameter holds. The CLI reads every kind from text but "int", "float", "file"
# and "flag"; "event" is logged as `#3` or the wamid, "file" is read before planning.
ParamKind = Literal["event", "text", "int", "float", "value", "seed", "file", "flag"]
_ANNOTATIONS: dict[ParamKind, str] = {
    "event": "EventRef",
    "text": "str",
    "int": "int",
    "float": "float",
    "value": "Any",
    "seed": "str | int",
    "file": "Path",
    "flag": "bool",
}
REQUIRED: Any = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    """One parameter of an operation: its Python form, then how the CLI offers it."""

    name: str  # the Python keyword, the history key and the CLI option's destination
    kind: ParamKind
    default: Any = REQUIRED
    keyword_only: bool = False
    positional_only: bool = False
    # Checks or normalises the value before anything is read (raises MutationError).
    convert: Callable[[Any], Any] | None = None
    option: str | None = None  # "--times"; None: a positional CLI argument
    help: str | None = None
    metavar: str | None = None
    minimum: float | None = None  # the CLI rejects smaller values (the plan checks too)
    show_default: bool = False
    cli_kind: ParamKind | None = None  # when the CLI reads it as another kind

    @property
    def annotation(self) -> str:
        """The type the public function shows for it."""
        base = _ANNOTATIONS[self.kind]
        return f"{base} | None" if self.default is None else base

    def logged(self, value: Any) -> Any:
        """The value as the history and `MutationResult.arguments` keep it."""
        if value is None:
            return None
        if self.kind == "event":
            return _ref(value)
        if self.kind == "file":
            return str(value.path if isinstance(value, MediaFile) else value)
        return value


def _ref(ref: EventRef) -> str:
    """An event as the history names it: `#3`, or the wamid."""
    return f"#{ref}" if isinstance(ref, int) else ref


@dataclass(frozen=True)
class Variant:
    """One subcommand of an operation whose CLI splits by a parameter (`add text`)."""

    value: str  # the value of the operation's `variant` parameter: "button_reply"
    help: str
    # The CLI options in order: names of the operation's parameters, or extra keyword
    # arguments (message fields) that only this variant passes.
    options: tuple[str | Param, ...] = ()

    @property
    def command(self) -> str:
        return self.value.replace("_", "-")


@dataclass(frozen=True)
class Operation:
    """One mutation: name, plan, parameters; the public function and the CLI come from it."""

    name: str  # the CLI subcommand and the history's operation: "fail-status"
    function_name: str  # the public function: "fail_status"
    # Called as plan(tape, **values), plus media=CassetteMedia when `uses_media`.
    plan: Callable[..., Change]
    params: tuple[Param, ...]
    doc: str  # the public function's docstring
    help: str  # the CLI subcommand's help
    uses_media: bool = False
    fields: bool = False  # takes message fields as extra keyword arguments
    # Checks the values (and fills defaults that depend on others) before anything is read.
    check: Callable[[dict[str, Any]], None] | None = None
    one_of: tuple[str, ...] = ()  # the CLI wants exactly one of these options
    variant: str | None = None  # the parameter whose values are CLI subcommands
    variants: tuple[Variant, ...] = ()

    def param(self, name: str) -> Param:
        """The parameter called `name`."""
        return next(p for p in self.params if p.name == name)

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """`(store, name, <params>, *, out=None, in_place=False[, **fields])`."""
        kinds = inspect.Parameter
        head = (
            kinds.POSITIONAL_ONLY
            if any(p.positional_only for p in self.params)
            else kinds.POSITIONAL_OR_KEYWORD
        )
        params = [
            inspect.Parameter("store", head, annotation="CassetteStore"),
            inspect.Parameter("name", head, annotation="str"),
        ]
        for p in self.params:
            kind = (
                kinds.POSITIONAL_ONLY
                if p.positional_only
                else kinds.KEYWORD_ONLY
                if p.keyword_only
                else kinds.POSITIONAL_OR_KEYWORD
            )
            params.append(
                inspect.Parameter(p.name, kind, default=p.default, annotation=p.annotation)
            )
        params.append(
            inspect.Parameter("out", kinds.KEYWORD_ONLY, default=None, annotation="str | None")
        )
        params.append(
            inspect.Parameter("in_place", kinds.KEYWORD_ONLY, default=False, annotation="bool")
        )
        if self.fields:
            params.append(inspect.Parameter("fields", kinds.VAR_KEYWORD, annotation="Any"))
        return inspect.Signature(params, return_annotation="MutationResult")

    def complete(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` with every parameter not given at its default (extras kept after)."""
        out = {p.name: values.get(p.name, p.default) for p in self.params}
        missing = [name for name, value in out.items() if value is REQUIRED]
        if missing:
            raise TypeError(f"{self.function_name}() needs {', '.join(missing)}")
        if not self.fields and set(values) - set(out):
            raise TypeError(f"{self.function_name}() takes no {', '.join(set(values) - set(out))}")
        return {**out, **{k: v for k, v in values.items() if k not in out}}

    def prepare(self, values: Mapping[str, Any]) -> Call:
        """Check and complete `values` (by parameter name; extras are message fields),
        convert them and read files, before the cassette is touched."""
        given = self.complete(values)
        if self.check is not None:
            self.check(given)
        for p in self.params:
            given[p.name] = _prepared(p, given[p.name])
        own = {p.name for p in self.params}
        arguments = {p.name: p.logged(given[p.name]) for p in self.params}
        arguments.update((k, v) for k, v in given.items() if k not in own)
        return Call(given, arguments)


@dataclass(frozen=True)
class Call:
    """An operation's values as its plan takes them, and as the history logs them."""

    values: dict[str, Any]  # plan(tape, **values): files read, events as given
    arguments: dict[str, Any]  # events as `#3` or the wamid, files as paths; None kept


def _prepared(p: Param, value: Any) -> Any:
    """A value converted, and a file read, before the cassette is touched."""
    if p.convert is not None:
        value = p.convert(value)
    if p.kind == "file" and value is not None and not isinstance(value, MediaFile):
        path = Path(value)
        try:
            value = MediaFile(path, path.read_bytes())
        except OSError as e:
            raise MutationError(f"cannot read {path}: {e.strerror or e}") from e
    return value
