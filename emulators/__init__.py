"""Local Azure for tests, benchmarks and the demo. Never shipped in the Function package.

- ``emulators.localazure``: starts Azurite, the Key Vault emulator and the ARM emulator on free
  loopback ports and writes ``endpoints.json`` (``python -m emulators up --dir DIR``).
- ``emulators.keyvault``: the Key Vault keys data plane over HTTPS.
- ``emulators.arm``: Azure Resource Manager for Microsoft.Storage and Microsoft.MachineLearningServices.
- ``emulators.tls``: the local certificate authority both HTTPS emulators share.
- ``emulators.auth``: bearer-token parsing shared by both HTTPS emulators.
"""
