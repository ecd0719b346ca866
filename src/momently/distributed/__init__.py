"""Distributed mode: the embedded engine partitioned by customer over NATS JetStream.

``log`` appends events to a partitioned JetStream stream, ``lease`` places
partition owners with leases in JetStream KV, ``worker`` runs the embedded
stages for the partitions a process owns; ``admin``, ``journeys`` and ``world``
are the admin API of an ingest node (reads over the partitions' stores, world
events published to every partition), ``deliver`` a worker's outbox. nats-py is
imported only here.
"""
