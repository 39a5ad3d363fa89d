"""Loa: fans emergency alerts out to every subscriber in the affected regions, on Kafka.

Data flow (see README.md): ``ingest`` -> ``directory`` -> ``fanout`` -> send tasks. The pure
core (records, regions, ingest, directory index, fan-out encoding) imports neither Faust nor
aiokafka; ``streams.runtime.app`` wires it to Kafka.
"""

__version__ = "0.1.0"
