"""Re-wrap of client-side-encrypted blobs' data keys after a rotation (metadata rewrite only).

Modules: ``metadata`` (the ``encryptiondata`` record), ``keys`` (unwrap through Key Vault, wrap
locally), ``throttle`` (the adaptive limiter and retry policy), ``scan`` (listing pages and
classifying blobs), ``worker`` (one work item), ``checkpoint`` (work items in Table storage),
``adapter`` (the ``DataKeys`` port).
"""
