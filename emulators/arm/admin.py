"""The admin API (``/admin/...`` on the ARM port): clock, RBAC, throttle, faults, LRO timing and outcome
modes, the resource providers' Key Vault outage, counters, resource groups, user-assigned identities,
storage-account access, and (``estate_admin``) generic resources, key access of registries and disk
encryption sets, and the Resource Graph quota.

Same shapes as the Key Vault emulator's admin API where both have the concept. No auth: it is
for tests and the demo, on loopback only.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulators.arm import errors, versions
from emulators.arm.core import Call, Emulator
from emulators.arm.disk_encryption_sets import DiskEncryptionSetProvider
from emulators.arm.estate_admin import EstateAdmin
from emulators.arm.rbac import UnknownRole, role_of
from emulators.arm.registries import RegistryProvider
from emulators.arm.state import ML_UPDATE_APPLIES, ML_UPDATE_FAILED_KEEPS, ML_UPDATE_MODES, KeyVaultOutage, State
from emulators.arm.storage import KEY_REPORTS, StorageProvider
from emulators.arm.throttle import KINDS, TokenBuckets

_FAULT_KINDS = ("status", "latency", "drop")


def _bad(message: str) -> errors.ArmError:
    return errors.ArmError(400, "InvalidAdminRequest", message)


class AdminApi:
    def __init__(
        self,
        emulator: Emulator,
        storage: StorageProvider,
        registries: RegistryProvider,
        disk_encryption_sets: DiskEncryptionSetProvider,
        buckets: TokenBuckets,
    ) -> None:
        self.emulator = emulator
        self.storage = storage
        self.estate = EstateAdmin(emulator, registries, disk_encryption_sets)
        self.buckets = buckets

    @property
    def state(self) -> State:
        return self.emulator.state

    async def handle(self, request: Request) -> Response:
        path = request.url.path.rstrip("/").lower()
        method = request.method.upper()
        body: Any = None
        if method in ("PUT", "POST"):
            raw = await request.body()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise _bad("the body is not JSON") from None
            if not isinstance(body, dict):
                raise _bad("the body must be a JSON object")
        handler = {
            ("GET", "/admin/health"): self._health,
            ("GET", "/admin/clock"): self._get_clock,
            ("PUT", "/admin/clock"): self._put_clock,
            ("GET", "/admin/role-assignments"): self._get_roles,
            ("PUT", "/admin/role-assignments"): self._put_roles,
            ("POST", "/admin/role-assignments"): self._add_role,
            ("GET", "/admin/throttle"): self._get_throttle,
            ("PUT", "/admin/throttle"): self._put_throttle,
            ("GET", "/admin/throttle/stats"): self._throttle_stats,
            ("GET", "/admin/faults"): self._get_faults,
            ("PUT", "/admin/faults"): self._put_faults,
            ("DELETE", "/admin/faults"): self._clear_faults,
            ("GET", "/admin/lro"): self._get_lro,
            ("PUT", "/admin/lro"): self._put_lro,
            ("GET", "/admin/keyvault-outage"): self._get_outage,
            ("PUT", "/admin/keyvault-outage"): self._put_outage,
            ("DELETE", "/admin/keyvault-outage"): self._end_outage,
            ("GET", "/admin/paging"): self._get_paging,
            ("PUT", "/admin/paging"): self._put_paging,
            ("GET", "/admin/counters"): self._get_counters,
            ("DELETE", "/admin/counters"): self._reset_counters,
            ("POST", "/admin/resource-groups"): self._add_group,
            ("POST", "/admin/user-assigned-identities"): self._add_identity,
            ("GET", "/admin/storage-accounts/access"): self._access,
            ("POST", "/admin/storage-accounts"): self._seed_accounts,
            ("PUT", "/admin/storage-accounts/key-report"): self._key_report,
            **self.estate.routes(),
        }.get((method, path))
        if handler is None:
            raise errors.ArmError(404, "NotFound", f"no admin route {method} {request.url.path}")
        result = await handler(request, body)
        self.emulator.store.save()
        return result

    async def _health(self, _request: Request, _body: Any) -> Response:
        return JSONResponse({"status": "ok"})

    async def _get_clock(self, _request: Request, _body: Any) -> Response:
        return JSONResponse({"now": self.emulator.store.now()})

    async def _put_clock(self, _request: Request, body: dict[str, Any]) -> Response:
        if isinstance(body.get("now"), int | float):
            self.emulator.store.set_now(float(body["now"]))
        elif isinstance(body.get("advance_seconds"), int | float):
            self.emulator.store.advance(float(body["advance_seconds"]))
        else:
            raise _bad('expected {"now": unix seconds} or {"advance_seconds": N}')
        async with self.emulator.write_lock:
            for account in list(self.state.storage_accounts.values()):
                await self.storage.daily_check(account)
        return JSONResponse({"now": self.emulator.store.now()})

    async def _get_roles(self, _request: Request, _body: Any) -> Response:
        return JSONResponse({"value": self.state.role_assignments})

    @staticmethod
    def _assignment(item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or not item.get("principal_id") or not (item.get("role") or item.get("actions")):
            raise _bad('each assignment needs "principal_id" and "role" (or "actions"), "scope" optional')
        assignment = {"principal_id": str(item["principal_id"]), "scope": str(item.get("scope") or "/")}
        for key in ("role", "actions", "not_actions"):
            if key in item:
                assignment[key] = item[key]
        try:
            role_of(assignment)
        except UnknownRole as exc:
            raise _bad(str(exc)) from None
        return assignment

    async def _put_roles(self, _request: Request, body: dict[str, Any]) -> Response:
        value = body.get("value")
        if not isinstance(value, list):
            raise _bad('expected {"value": [assignments]}')
        self.state.role_assignments = [self._assignment(item) for item in value]
        return JSONResponse({"value": self.state.role_assignments})

    async def _add_role(self, _request: Request, body: dict[str, Any]) -> Response:
        assignment = self._assignment(body)
        self.state.role_assignments.append(assignment)
        return JSONResponse(assignment, status_code=201)

    async def _get_throttle(self, _request: Request, _body: Any) -> Response:
        throttle = self.state.throttle
        return JSONResponse({"enabled": throttle.enabled, **throttle.buckets})

    async def _put_throttle(self, request: Request, body: dict[str, Any]) -> Response:
        """``{"enabled"?, "reads"?|"writes"?|"deletes"?: {"bucket"?, "refill_per_s"?, "initial"?}}``.

        Every bucket is forgotten; each starts again full, or at its kind's ``initial`` tokens when set
        (``null`` removes it). Not Azure's: a bench measures a sustained rate from a drained bucket.
        """
        throttle = self.state.throttle
        unknown = set(body) - {"enabled", *KINDS}
        if unknown:
            raise _bad(f"unknown throttle settings {sorted(unknown)}; expected 'enabled' and {list(KINDS)}")
        buckets = {kind: dict(bucket) for kind, bucket in throttle.buckets.items()}
        for kind in KINDS:
            change = body.get(kind)
            if change is None:
                continue
            if not isinstance(change, dict) or set(change) - {"bucket", "refill_per_s", "initial"}:
                raise _bad(f'"{kind}" must be {{"bucket"?: N, "refill_per_s"?: R, "initial"?: N}}')
            size = change.get("bucket", buckets[kind]["bucket"])
            refill = change.get("refill_per_s", buckets[kind]["refill_per_s"])
            initial = change.get("initial")  # a kind restated without it starts full again
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise _bad(f"{kind}.bucket must be a positive integer")
            if not isinstance(refill, int | float) or isinstance(refill, bool) or refill <= 0:
                raise _bad(f"{kind}.refill_per_s must be a positive number")
            if initial is not None and (not isinstance(initial, int) or isinstance(initial, bool) or initial < 0):
                raise _bad(f"{kind}.initial must be a whole number of tokens, 0 or more (or null)")
            buckets[kind] = {"bucket": size, "refill_per_s": float(refill)}
            if initial is not None:
                buckets[kind]["initial"] = min(initial, size)
        if "enabled" in body:
            throttle.enabled = bool(body["enabled"])
        throttle.buckets = buckets
        self.buckets.reset()
        return await self._get_throttle(request, None)

    async def _throttle_stats(self, request: Request, _body: Any) -> Response:
        """``{"value": [{subscription_id, principal, kind, tokens, granted, throttled, first_request_at,
        last_granted_at}]}``: what each bucket answered (``?subscription_id=`` narrows it)."""
        return JSONResponse({"value": self.buckets.stats(request.query_params.get("subscription_id"))})

    async def _get_faults(self, _request: Request, _body: Any) -> Response:
        return JSONResponse({"rules": self.state.faults})

    async def _put_faults(self, _request: Request, body: dict[str, Any]) -> Response:
        """Same rule shape as the Key Vault emulator: ``{"rules": [rule...]}`` or one rule."""
        items = body["rules"] if isinstance(body.get("rules"), list) else [body] if body else []
        faults = []
        for item in items:
            if not isinstance(item, dict) or item.get("kind") not in _FAULT_KINDS:
                raise _bad(f"'kind' must be one of {_FAULT_KINDS}")
            rate = item.get("rate", 1.0)
            if not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise _bad("'rate' must be a number from 0 to 1")
            status = item.get("status", 503)
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise _bad("'status' must be an HTTP error status (400-599)")
            count = item.get("count")
            if count is not None and (not isinstance(count, int) or count < 1):
                raise _bad("'count' must be a positive integer")
            operations = item.get("operations") or []
            if not isinstance(operations, list) or not all(isinstance(o, str) for o in operations):
                raise _bad("'operations' must be a list of operation names (see GET /admin/counters)")
            faults.append(
                {
                    "rate": float(rate),
                    "kind": item["kind"],
                    "status": status,
                    "latency_ms": int(item.get("latency_ms", 0)),
                    "operations": operations,
                    "count": count,
                    "retry_after": item.get("retry_after"),
                }
            )
        self.state.faults = faults
        return JSONResponse({"rules": faults})

    async def _clear_faults(self, _request: Request, _body: Any) -> Response:
        self.state.faults = []
        return JSONResponse({"rules": []})

    async def _get_lro(self, _request: Request, _body: Any) -> Response:
        lro = self.state.lro
        return JSONResponse(
            {
                "retry_after_s": lro.retry_after_s,
                "polls_until_done": lro.polls_until_done,
                "ml_update": lro.ml_update,
                "ml_update_applies": lro.ml_update_applies,
                "ml_update_failed_keeps": lro.ml_update_failed_keeps,
                "error": lro.error,
                "unpolled_grace_s": lro.unpolled_grace_s,
            }
        )

    async def _put_lro(self, request: Request, body: dict[str, Any]) -> Response:
        lro = self.state.lro
        if "retry_after_s" in body:
            if not isinstance(body["retry_after_s"], int) or body["retry_after_s"] < 0:
                raise _bad("retry_after_s must be a whole number of seconds, 0 or more")
            lro.retry_after_s = body["retry_after_s"]
        if "polls_until_done" in body:
            if not isinstance(body["polls_until_done"], int) or body["polls_until_done"] < 1:
                raise _bad("polls_until_done must be a whole number, 1 or more")
            lro.polls_until_done = body["polls_until_done"]
        if "unpolled_grace_s" in body:
            if not isinstance(body["unpolled_grace_s"], int) or body["unpolled_grace_s"] < 0:
                raise _bad("unpolled_grace_s must be a whole number of seconds, 0 or more")
            lro.unpolled_grace_s = body["unpolled_grace_s"]
        if "ml_update" in body:
            if body["ml_update"] not in ML_UPDATE_MODES:
                raise _bad(f"ml_update must be one of {list(ML_UPDATE_MODES)}")
            lro.ml_update = body["ml_update"]
        if "ml_update_applies" in body:
            if body["ml_update_applies"] not in ML_UPDATE_APPLIES:
                raise _bad(f"ml_update_applies must be one of {list(ML_UPDATE_APPLIES)}")
            lro.ml_update_applies = body["ml_update_applies"]
        if "ml_update_failed_keeps" in body:
            if body["ml_update_failed_keeps"] not in ML_UPDATE_FAILED_KEEPS:
                raise _bad(f"ml_update_failed_keeps must be one of {list(ML_UPDATE_FAILED_KEEPS)}")
            lro.ml_update_failed_keeps = body["ml_update_failed_keeps"]
        if "error" in body:
            error = body["error"]
            if not isinstance(error, dict) or not isinstance(error.get("code"), str) or not error["code"]:
                raise _bad('error must be an ARM error object: {"code", "message"?, "details"?}')
            lro.error = {"message": "", **error}
        return await self._get_lro(request, None)

    async def _get_outage(self, _request: Request, _body: Any) -> Response:
        outage = self.state.keyvault_outage
        now = self.emulator.store.real_now()
        return JSONResponse(
            {
                "active": outage.active(now),
                "failures_left": outage.failures_left,
                "seconds_left": max(0.0, outage.until - now) if outage.until is not None else None,
                "providers": outage.providers,
                "status": outage.status,
                "ml_delivery": outage.ml_delivery,
            }
        )

    async def _put_outage(self, request: Request, body: dict[str, Any]) -> Response:
        """``{"count": N | "duration_s": S, "providers"?, "status"?: 400|503, "ml_delivery"?}`` starts an outage."""
        count, duration = body.get("count"), body.get("duration_s")
        if (count is None) == (duration is None):
            raise _bad('give exactly one of "count" (key checks that fail) or "duration_s" (seconds)')
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise _bad("count must be a positive integer")
        if duration is not None and (not isinstance(duration, int | float) or duration <= 0):
            raise _bad("duration_s must be a positive number")
        providers = body.get("providers", ["storage", "ml"])
        if not isinstance(providers, list) or not providers or set(providers) - {"storage", "ml"}:
            raise _bad('providers must be a non-empty list of "storage" and "ml"')
        status = body.get("status", 400)
        if status not in (400, 503):
            raise _bad("status must be 400 or 503")
        delivery = body.get("ml_delivery", "response")
        if delivery not in ("response", "operation"):
            raise _bad('ml_delivery must be "response" or "operation"')
        self.state.keyvault_outage = KeyVaultOutage(
            failures_left=count,
            until=self.emulator.store.real_now() + float(duration) if duration is not None else None,
            providers=list(providers),
            status=status,
            ml_delivery=delivery,
        )
        return await self._get_outage(request, None)

    async def _end_outage(self, request: Request, _body: Any) -> Response:
        self.state.keyvault_outage = KeyVaultOutage()
        return await self._get_outage(request, None)

    async def _get_paging(self, _request: Request, _body: Any) -> Response:
        return JSONResponse({"page_size": self.state.page_size})

    async def _put_paging(self, request: Request, body: dict[str, Any]) -> Response:
        size = body.get("page_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise _bad("page_size must be a positive integer, or null for no paging")
        self.state.page_size = size
        return await self._get_paging(request, None)

    async def _get_counters(self, _request: Request, _body: Any) -> Response:
        return JSONResponse(dict(sorted(self.state.counters.items())))

    async def _reset_counters(self, _request: Request, _body: Any) -> Response:
        self.state.counters = {}
        return JSONResponse({})

    async def _add_group(self, _request: Request, body: dict[str, Any]) -> Response:
        sub, name = body.get("subscription_id"), body.get("name")
        if not isinstance(sub, str) or not isinstance(name, str) or not sub or not name:
            raise _bad('expected {"subscription_id", "name", "location"?}')
        async with self.emulator.write_lock:
            self.emulator.put_resource_group(
                sub, name, str(body.get("location") or "eastus"), dict(body.get("tags") or {})
            )
        group = await self.emulator.resource_group(sub, name)
        return JSONResponse(group, status_code=201)

    async def _add_identity(self, _request: Request, body: dict[str, Any]) -> Response:
        identity_id = body.get("id")
        if (
            not isinstance(identity_id, str)
            or "/providers/microsoft.managedidentity/userassignedidentities/" not in identity_id.lower()
        ):
            raise _bad('"id" must be a Microsoft.ManagedIdentity/userAssignedIdentities resource id')
        derived = self.emulator.store.user_identity(identity_id)
        entry = {
            "id": identity_id,
            "principal_id": str(body.get("principal_id") or derived["principalId"]),
            "client_id": str(body.get("client_id") or derived["clientId"]),
        }
        self.state.user_identities[identity_id.lower()] = entry
        return JSONResponse(entry, status_code=201)

    async def _seed_accounts(self, request: Request, body: dict[str, Any]) -> Response:
        """``{"subscription_id", "resource_group", "accounts": [{"name", <a create's body>}]}``: many accounts at once.

        Each is validated exactly as ``PUT`` validates it (CMK checked against the Key Vault emulator as the
        account's identity) and stored ``Succeeded``; all or none. Not throttled, not counted: it builds big
        estates for tests and benchmarks without spending the ARM write bucket.
        """
        sub, group, accounts = body.get("subscription_id"), body.get("resource_group"), body.get("accounts")
        if not isinstance(sub, str) or not isinstance(group, str) or not isinstance(accounts, list) or not accounts:
            raise _bad('expected {"subscription_id", "resource_group", "accounts": [{"name", ...}, ...]}')
        names = [a.get("name") if isinstance(a, dict) else None for a in accounts]
        if not all(isinstance(n, str) and n for n in names):
            raise _bad('every account needs a "name"')
        if len({str(n) for n in names}) != len(names):
            raise _bad("account names must be unique")
        base_url = f"{request.url.scheme}://{request.url.netloc}"
        calls = [
            Call(
                method="PUT",
                path=f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/{name}",
                params={"sub": sub, "rg": group, "name": str(name)},
                query={},
                api_version=versions.STORAGE[-1],
                principal="admin-seed",
                base_url=base_url,
                body=json.dumps({k: v for k, v in account.items() if k != "name"}).encode(),
            )
            for name, account in zip(names, accounts, strict=True)
        ]
        return JSONResponse({"value": await self.storage.seed(calls)}, status_code=201)

    async def _key_report(self, _request: Request, body: dict[str, Any]) -> Response:
        """``{"id": account id, "report": "versioned" | "empty" | "absent"}``: how the account's GET shows
        ``currentVersionedKeyIdentifier`` (``KEY_REPORTS``); the key it uses does not change."""
        account = self.state.storage_accounts.get(str(body.get("id", "")).lower())
        if account is None or not account.get("cmk"):
            raise errors.ArmError(
                404, "ResourceNotFound", f"no storage account with a customer-managed key {body.get('id')!r}"
            )
        report = body.get("report")
        if report not in KEY_REPORTS:
            raise _bad(f"'report' must be one of {', '.join(KEY_REPORTS)}")
        async with self.emulator.write_lock:
            account["cmk"]["key_report"] = report
        return JSONResponse({"id": account["id"], "report": report})

    async def _access(self, request: Request, _body: Any) -> Response:
        account_id = request.query_params.get("id", "")
        account = self.state.storage_accounts.get(account_id.lower())
        if account is None:
            raise errors.ArmError(404, "ResourceNotFound", f"no storage account {account_id!r}")
        async with self.emulator.write_lock:
            result = await self.storage.access(account)
        return JSONResponse(result)
