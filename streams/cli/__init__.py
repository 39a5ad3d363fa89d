"""The ``loa`` command line: a thin layer of command groups over functions tests call directly.

- :mod:`streams.cli.main`: the root group and the map of commands (imported when used);
- :mod:`streams.cli.kit`: the conventions every command shares (exit codes, one-line errors,
  ``--debug``, ``--json``); :mod:`streams.cli.context`: settings and logging for a command;
- one module per group of commands: :mod:`~streams.cli.setup` (config, init, topics, kafka,
  directory), :mod:`~streams.cli.registry` (keys, agencies, channels), :mod:`~streams.cli.alerts`
  (publish, preview, watch, status), :mod:`~streams.cli.worker`, :mod:`~streams.cli.processes`
  (gateway, deliver), :mod:`~streams.cli.demo`, :mod:`~streams.cli.bench`.

What it may import: anything in ``streams``; nothing in ``streams`` imports it (the commands
are the top of the import graph; ``tests/unit/test_layout.py`` checks that).
"""

from streams.cli.main import main

__all__ = ["main"]
