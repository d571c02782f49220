"""The tamper-evident audit trail: hash-chained records in Table storage, signed checkpoints.

- ``codec``: an ``AuditRecord`` to and from its canonical JSON, and the chain hash.
- ``chain``: pure verification of a stored chain (which record broke, and how).
- ``signing``: the ``CheckpointSigner`` port and its Key Vault adapter.
- ``store``: ``TableAuditLog``, the ``AuditLog`` port over Azure Table storage.
- ``service``: the reads the CLI and the HTTP API share (list, show, verify).
"""
