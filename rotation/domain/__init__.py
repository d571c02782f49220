"""The pure core: values and decisions, no I/O. Tested with plain values and an injected clock."""
