#!/usr/bin/env bash
# Run by the auditRetention deployment script (infra/main.bicep): create, lock and extend the audit
# container's time-based retention policy. Idempotent: a redeployment finds it locked and at least as long.
set -eu
args="--account-name $ACCOUNT --container-name $CONTAINER --resource-group $GROUP"
show() { az storage container immutability-policy show $args --query "$1" -o tsv 2>/dev/null || true; }
state=$(show state)
if [ "$state" != "Locked" ] && [ "$state" != "Unlocked" ]; then
  az storage container immutability-policy create $args --period "$DAYS" --allow-protected-append-writes true >/dev/null
  state=Unlocked
fi
if [ "$state" = "Unlocked" ] && [ "$LOCK" = "true" ]; then
  az storage container immutability-policy lock $args --if-match "$(show etag)" >/dev/null
fi
if [ "$(show immutabilityPeriodSinceCreationInDays)" -lt "$DAYS" ]; then
  az storage container immutability-policy extend $args --period "$DAYS" --if-match "$(show etag)" >/dev/null
fi
printf '{"state": "%s", "days": %s}' "$(show state)" "$(show immutabilityPeriodSinceCreationInDays)" > "$AZ_SCRIPTS_OUTPUT_PATH"
