"""Replication to object storage: the replica stores (DESIGN.md, "Replication")."""
