"""``loa demo`` and the tools it shares with the tests and benchmarks of a source checkout.

- :mod:`~streams.demo.run`: the demo (a broker, a worker, a synthetic directory, a typhoon
  alert fanned out, a summary);
- :mod:`~streams.demo.oracle`: the independent audience oracle the demo's "expected" count and
  the tests' expectations come from (it shares no code with the fan-out it checks);
- :mod:`~streams.demo.localrun`: the dev broker (``deploy/kafka/kafka.sh``) and worker
  subprocesses.

They need the repository's ``deploy/`` and are not in the wheel (``pyproject.toml`` excludes
this package): an installed ``loa demo`` says so. Nothing in the data flow imports them.
"""
