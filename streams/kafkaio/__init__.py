"""Kafka I/O: every client Loa makes, transactions' raw record batches, replicas of small topics.

Where it sits: under every stage. :mod:`~streams.kafkaio.clients` makes every producer, consumer,
admin client, raw fetcher and the Faust app's broker settings (one place for connection and
security options); :mod:`~streams.kafkaio.internals` is the only module that imports aiokafka's
private internals, behind a version check; :mod:`~streams.kafkaio.rawkafka` and
:mod:`~streams.kafkaio.recordbatch` move millions of fixed-layout records as whole record batches;
:mod:`~streams.kafkaio.replica` keeps a small compacted topic in memory;
:mod:`~streams.kafkaio.acls` reads the broker's ACLs and adds the missing ones (``loa init``);
:mod:`~streams.kafkaio.transactions` ends the transactions a previous owner left with no marker.
"""
