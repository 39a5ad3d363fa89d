"""Receipts: what happened to an alert after the fan-out, and how to watch it.

- :mod:`~streams.receipts.fold`: the receipts agent folds ``loa.sends.receipts`` into per-alert
  tallies (delivered, retrying, fell back, failed, per channel) on ``loa.receipts.progress``;
- :mod:`~streams.receipts.status`: ``loa status``'s reader of those tallies and the fan-out's
  progress;
- :mod:`~streams.receipts.observe`: an alert's fate from outside (its decision, its lineage's
  messages, the fan-out's progress per partition), for ``loa publish``/``watch``/``status``.

May import: the stages below (fan-out records, ingest records), ``kafkaio``, foundations.
"""
