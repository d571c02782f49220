"""Local Azure Resource Manager for Microsoft.Storage and Microsoft.MachineLearningServices.

``python -m emulators.arm`` serves it over HTTPS; see docs/emulators/arm.md. Modules:

- ``app``: routing and the request pipeline (faults, auth, api-version, throttle, RBAC).
- ``storage``, ``ml``, ``resources``: the resource providers.
- ``keyvault``: asks the Key Vault emulator, as a resource's identity, whether a key is usable.
- ``rbac``: built-in roles and scope checks. ``state``: persisted state. ``errors``: ARM error shapes.
- ``admin``: the ``/admin`` API; ``admin_client``: its Python client for tests.
"""
