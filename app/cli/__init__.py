"""The ``attention-flows`` command line: one module per command family.

Each family module has ``add_parser(commands)`` (its subcommands, flags and help) and ``run(args) -> int``;
:mod:`app.cli.main` builds the parser from them and dispatches. Building the parser imports every family, so a
family imports what its command needs (torch, pandas, plotly, Dash) inside ``run``: ``--help`` stays instant.
"""
