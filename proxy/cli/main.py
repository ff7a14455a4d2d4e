"""The `pseudowa` command line: one click group, thin shells over the library.

Every user mistake surfaces as one line on stderr and a non-zero exit; the
library raises `StoreError` (or another `UserError`) and `OneLineGroup` turns it into
that line. The commands live in one module per job; this module only assembles them,
so the whole command tree reads here.
"""

from __future__ import annotations

import click

from pseudowa.proxy.cli.cassette import cassette_group
from pseudowa.proxy.cli.db import db_group
from pseudowa.proxy.cli.misc import ca_cmd
from pseudowa.proxy.cli.misc import demo_cmd
from pseudowa.proxy.cli.misc import example_bot_cmd
from pseudowa.proxy.cli.mutate import mutate_group
from pseudowa.proxy.cli.options import OneLineGroup
from pseudowa.proxy.cli.options import db_option
from pseudowa.proxy.cli.record import record_cmd
from pseudowa.proxy.cli.replay import replay_cmd


@click.group("pseudowa", cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pseudowa", prog_name="pseudowa")
@db_option
def cli(db: str | None) -> None:
    """pseudowa: record a WhatsApp Cloud API bot's traffic once, replay it offline in CI."""


cli.add_command(db_group)
cli.add_command(cassette_group)
cassette_group.add_command(mutate_group)
cli.add_command(record_cmd)
cli.add_command(replay_cmd)
cli.add_command(ca_cmd)
cli.add_command(demo_cmd)
cli.add_command(example_bot_cmd)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="pseudowa")


if __name__ == "__main__":  # pragma: no cover
    main()
