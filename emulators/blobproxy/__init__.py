"""A thin proxy in front of Azurite for blob states Azurite 3.35 does not model.

Azurite answers leases itself (412 ``LeaseIdMissing`` on a write without the lease id). It does not
implement immutability policies or legal holds (its ``Set Blob Immutability Policy`` and ``Set Blob
Legal Hold`` answer 501), and it lets ``Set Blob Metadata`` through on an archived blob; it has no blob
versioning or soft delete. This proxy adds those (versioning and soft delete as account modes, off by
default), with Azure's error shape (status, ``x-ms-error-code`` header, XML body), and forwards
everything else unchanged: the official SDK clients talk to it as to Azurite (same account, same shared
key, same paths). For tests, an admin-set fault mode answers the next N matching requests with a
transient 5xx (``faults.py``). Documented in ``docs/emulators/blobproxy.md``.
"""
