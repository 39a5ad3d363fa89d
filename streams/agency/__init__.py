"""What an agency does from outside the worker: publish an alert and preview its audience.

- :mod:`~streams.agency.inbound`: write one alert to ``loa.alerts.inbound`` exactly as the
  agency made it (the gateway and ``loa publish`` both write through it);
- :mod:`~streams.agency.publish`: ``loa publish``: sign, send and wait for ingest's decision;
- :mod:`~streams.agency.preview`: judge an alert against the live lifecycle and directory
  without sending it (``loa preview``).

May import: ingest (the same rules ingest applies), receipts (the decision), ``kafkaio``,
foundations.
"""
