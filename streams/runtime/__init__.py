"""The processes' wiring: what a worker is made of and how a deployment is prepared.

- :mod:`~streams.runtime.app`: the Faust worker (ingest, directory, fan-out and receipts agents
  wired to one :class:`~streams.kafkaio.ownership.Ownership`);
- :mod:`~streams.runtime.shutdown`: the worker's start and graceful stop;
- :mod:`~streams.runtime.bootstrap`: ``loa init`` (topics, ACLs, agencies, channel limits).

May import: every stage, ``kafkaio``, foundations; imported only by the CLI.
"""
