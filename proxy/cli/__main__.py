"""`python -m pseudowa.proxy.cli`: the same as the `pseudowa` command."""

from pseudowa.proxy.cli.main import main

main()
