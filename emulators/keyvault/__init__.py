"""A local Azure Key Vault (keys API) that the official SDK uses unmodified: HTTPS, challenge auth, RBAC,
throttling, fault injection, rotation policies, soft delete and Event Grid events. Never shipped.

Run it with ``python -m emulators.keyvault`` (see ``__main__``); ``docs/emulators/keyvault.md`` describes
the wire behaviour and the admin API.
"""
