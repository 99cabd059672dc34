"""Replication of a data set to a replica store (docs/replication.md)."""

# Sync mode (the output gate): how long an event waits for the replica store before it
# fails with replica_unavailable. Here so that the CLI can show it without importing the
# replicator.
GATE_TIMEOUT_S = 10.0
