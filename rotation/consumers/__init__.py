"""Consumer kinds: one unit per kind of thing that uses a managed key, and the registry that lists them.

Everything the workflow knows about a kind lives in its unit, a module here implementing
``ConsumerUnit`` (``base.py``); planning, the steps, verification, rollback, retirement and the
reconciler iterate ``REGISTRY`` (``registry.py``) and never branch on a kind. Today's units:
``storage_accounts``, ``ml_workspaces``, ``container_registries``, ``disk_encryption_sets``,
``data_locations`` and ``unknown_references`` (every other resource naming the key, found through
Resource Graph: reported, never changed, blocking retirement of what it names).

The protocol (pure parts take plain values; I/O parts take the ports or the running rotation)::

    kind, label                   the journalled name; a plural for people
    repoint_step, settle_step     the run steps this kind adds (either may be None)
    permissions                   step -> the actions this kind needs in it ("plan" for its reads)
    discover(ports, key)          I/O: every candidate in the configured scope
    uses_key(item, key)           pure: does this candidate use the key
    plan(items, context)          pure: its consumers, the ConsumerChange each gets, its blockers
    readings(items, key)          pure: what read_back would say of each discovered item, by id ({}: none)
    repoint(run, change, observed) I/O: move ONE consumer: read (or take ``observed``, from the step's
                                  discovery), write (intent journalled before, outcome after), read
                                  back (the write's answer when it carries the resource); raises
                                  VerificationFailed to roll back
    read_back(ports, key, change) I/O: which version it is configured with and which it uses
    verify(change, reading, new)  pure: why it is not on the new version, or None
    roll_back(run, change)        I/O: put ONE consumer back on its version before (journalled)
    settle(run)                   I/O: the settle step's work (track adoption, wait on a re-wrap)
    references_to(items, key, v)  pure: each use of version v, for retirement
    at_retirement(change)         pure: the change as recorded when the old version retires
    describe(changes)             pure: a dry run's line for the re-point step

How the workflow uses a unit: ``plan`` collects every kind's share; each kind's ``repoint_step``
runs after ``verify_version`` in registry order, calling ``repoint`` per consumer (self-contained,
so a later change can run one step's consumers concurrently); then each ``settle_step``;
``verify_consumers`` reads every changed consumer back through its unit and rolls back through it;
``retire`` asks every unit for references to the old version. A rotation records the step list it
started with, so registering a kind (which adds steps) never strands a rotation in flight.

Adding a kind (container registries, disk encryption sets, ...): write its port and adapter, then
one module here with its unit, and append it to ``REGISTRY``. Nothing else in ``rotation/`` changes
beyond handing the unit its port: I/O parts reach ports through ``UnitPorts`` (the ``Dependencies``
fields), or a unit may hold its own port, built where the other adapters are. Shapes to expect:

- a re-point that is a long-running operation: ``repoint`` polls it to the end (or records
  "waiting" through its settle step) before reading back;
- a versionless or auto-rotating consumer: plan it as ``tracking``; its ``settle`` records adoption
  and its ``references_to`` blocks retirement until it adopts;
- references found but not understood (a Resource Graph hit of an unknown type): a unit with no
  steps whose ``plan`` lists them and whose ``references_to`` blocks retirement.
"""

from rotation.consumers.base import ConsumerRun, ConsumerUnit, Reading, Settled, UnitPorts
from rotation.consumers.registry import REGISTRY, RUN_STEPS, AnyUnit, ConsumerRegistry

__all__ = [
    "REGISTRY",
    "RUN_STEPS",
    "AnyUnit",
    "ConsumerRegistry",
    "ConsumerRun",
    "ConsumerUnit",
    "Reading",
    "Settled",
    "UnitPorts",
]
