// CMK rotation service: everything one deployment needs, with no more rights than each step needs.
//
// Deploy into the resource group that will hold the Function app:
//   az deployment group create -g <rg> -f infra/main.bicep -p @infra/main.parameters.example.json
// infra/main.json is the ARM JSON equivalent (written by hand: no Bicep compiler is available where
// this was built; tests/unit/test_infra.py checks the two declare the same things).
//
// Every role assignment carries a description "CMK rotation: <role> on <scope>" that matches a row
// of the step-to-permission table in docs/permissions.md; tests compare the two.

targetScope = 'resourceGroup'

@description('Azure region for the Function app, its storage, Application Insights and Log Analytics.')
param location string = resourceGroup().location

@description('Short lowercase prefix (3-11 letters or digits) for resource names.')
@minLength(3)
@maxLength(11)
param namePrefix string

@description('Key vaults holding the managed keys: [{name, resourceGroup, subscriptionId, keyNames: [..]}]. Each gets an Event Grid system topic; each key gets the CMK Rotation Key Operator role at key scope.')
param vaults array

@description('Name of the key that signs audit checkpoints (empty: no audit signing). It lives in the vault named by auditSigningKeyVaultName.')
param auditSigningKeyName string = ''

@description('Name of the vault (one of vaults) that holds auditSigningKeyName.')
param auditSigningKeyVaultName string = ''

@description('Subscriptions searched for consumers and for the vaults (ROTATION_SUBSCRIPTIONS); every vault must be in one of them. The read-only CMK Rotation Reader role is assigned on each; the custom roles are assignable in each.')
param consumerSubscriptionIds array = [
  subscription().subscriptionId
]

@description('Resource groups holding consumers (storage accounts, ML workspaces) to re-point: [{subscriptionId, resourceGroup}]. The CMK Rotation Consumer Operator role is assigned on each, never wider.')
param consumerResourceGroups array = []

@description('Object ids of the consumers\' own managed identities (storage accounts, ML workspaces). Each gets Key Vault Crypto Service Encryption User on each managed key. Leave empty to assign these yourself.')
param consumerPrincipalIds array = []

@description('Containers of client-side-encrypted blobs: [{subscriptionId, resourceGroup, storageAccountName, containerName, prefix}]. Storage Blob Data Contributor is assigned on each container only.')
param dataLocations array = []

@description('Create the Event Grid subscriptions. Leave false on the first deployment; set true once the code is published (the subscription validates that the on_key_vault_event function exists).')
param deployEventSubscriptions bool = false

@description('Days audit blobs stay immutable (time-based retention policy on the audit container).')
@minValue(1)
@maxValue(146000)
param auditRetentionDays int = 365

@description('Lock the audit container\'s retention policy once created (WORM). A locked policy can only be extended: audit blobs cannot be deleted or changed, the policy cannot be removed or shortened, and so the storage account and its resource group cannot be deleted until every audit blob is older than auditRetentionDays (docs/audit.md). Set false only for a throwaway test deployment.')
param lockAuditRetention bool = true

@description('Upper bound on Flex Consumption instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Hours after cut-over before the old key version may be disabled (ROTATION_RETIRE_GRACE_HOURS).')
param retireGraceHours string = '24'

@description('The reconciler rotates keys expiring within this many days whose event was missed (ROTATION_NEAR_EXPIRY_DAYS).')
param nearExpiryDays string = '30'

@description('NCRONTAB schedule (with seconds) of the reconcile timer (ROTATION_RECONCILE_SCHEDULE).')
param reconcileSchedule string = '0 */15 * * * *'

@description('Action groups (resource ids) the alert rules notify: on-call\'s pager or e-mail. Empty: alerts show in Azure Monitor only.')
param alertActionGroupIds array = []

@description('Address of docs/runbook.md as on-call reads it (the repository\'s web view); each alert rule links its section.')
param runbookUrl string = 'docs/runbook.md'

@description('Hours after which a rotation still running or waiting raises the "unfinished" alert.')
@minValue(1)
@maxValue(720)
param unfinishedRotationHours int = 6

@description('Days Log Analytics keeps the Function app\'s logs and traces.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 90

@description('Replication of the Function app\'s storage account (journal, audit, dead letters): geo-redundant by default.')
@allowed([
  'Standard_GZRS'
  'Standard_RAGZRS'
  'Standard_GRS'
  'Standard_RAGRS'
])
param storageSku string = 'Standard_GZRS'

var suffix = uniqueString(resourceGroup().id, namePrefix)
var storageAccountName = take('${toLower(namePrefix)}st${suffix}', 24)
var functionAppName = '${namePrefix}-cmkrot-${suffix}'
var keyVaultDns = environment().suffixes.keyvaultDns
var deploymentContainerName = 'app-package'
var deadLetterContainerName = 'eventgrid-deadletter'
var auditContainerName = 'rotation-audit'
var journalTableName = 'rotationjournal'
var auditTableName = 'rotationaudit'
var rewrapTableName = 'rotationrewrap'
var rewrapQueueName = 'rotation-rewrap'
var runQueueName = 'rotation-run'
var eventFunctionName = 'on_key_vault_event'

// Built-in roles (ids are the same in every tenant).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

// ROTATION_MANAGED_KEYS: the versionless URI of every key of every vault, comma-separated.
var managedKeysPerVault = [for v in vaults: format('https://{0}{1}/keys/{2}', v.name, keyVaultDns, join(v.keyNames, format(',https://{0}{1}/keys/', v.name, keyVaultDns)))]
var managedKeys = join(managedKeysPerVault, ',')
var auditSigningKeyUri = empty(auditSigningKeyName) ? '' : 'https://${auditSigningKeyVaultName}${keyVaultDns}/keys/${auditSigningKeyName}'
var dataLocationUris = [for d in dataLocations: 'https://${d.storageAccountName}.blob.${environment().suffixes.storage}/${d.containerName}${empty(d.prefix) ? '' : '/${d.prefix}'}']

module roles 'modules/roleDefinitions.bicep' = {
  name: 'cmk-rotation-roles-${suffix}'
  scope: subscription()
  params: {
    namePrefix: namePrefix
    assignableSubscriptionIds: union([subscription().subscriptionId], consumerSubscriptionIds)
  }
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-log-${suffix}'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${namePrefix}-appi-${suffix}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'cmk-rotation-alerts-${suffix}'
  params: {
    namePrefix: namePrefix
    location: location
    appInsightsId: appInsights.id
    actionGroupIds: alertActionGroupIds
    runbookUrl: runbookUrl
    unfinishedHours: unfinishedRotationHours
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches its storage over the public endpoint; shared-key access is disabled, so only Entra identities with a role on this account get in.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: public endpoint, Entra-only (allowSharedKeyAccess false, no anonymous blob access).
  // checkov:skip=CKV_AZURE_43: the name is computed (take(toLower(prefix) + 'st' + uniqueString(..), 24)); namePrefix is limited to 3-11 characters, lowercase letters and digits are the caller's contract.
  name: storageAccountName
  location: location
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource auditContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: auditContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Time-based retention: audit blobs cannot be changed or deleted for auditRetentionDays; appends to
// append blobs stay allowed. ARM cannot lock a container's policy declaratively (lock is a POST action)
// and a locked policy refuses the PUT a redeployment would send, so a deployment script owns the policy:
// it creates it if missing, locks it (lockAuditRetention), and extends it when auditRetentionDays grows.
// Its identity holds only the Audit Retention Locker role, on the audit container.
resource auditRetentionIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-audit-retention-${suffix}'
  location: location
}

resource auditRetentionAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(auditContainer.id, auditRetentionIdentity.id, 'cmk-rotation-audit-retention-locker')
  scope: auditContainer
  properties: {
    roleDefinitionId: roles.outputs.auditRetentionLockerRoleId
    principalId: auditRetentionIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'CMK rotation: CMK Rotation Audit Retention Locker on audit container'
  }
}

resource auditRetention 'Microsoft.Resources/deploymentScripts@2023-08-01' = {
  name: '${namePrefix}-audit-retention-${suffix}'
  location: location
  kind: 'AzureCLI'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${auditRetentionIdentity.id}': {}
    }
  }
  properties: {
    azCliVersion: '2.61.0'
    retentionInterval: 'PT1H'
    cleanupPreference: 'OnSuccess'
    environmentVariables: [
      {
        name: 'ACCOUNT'
        value: storage.name
      }
      {
        name: 'CONTAINER'
        value: auditContainerName
      }
      {
        name: 'GROUP'
        value: resourceGroup().name
      }
      {
        name: 'DAYS'
        value: string(auditRetentionDays)
      }
      {
        name: 'LOCK'
        value: lockAuditRetention ? 'true' : 'false'
      }
    ]
    scriptContent: loadTextContent('scripts/audit-retention.sh')
  }
  dependsOn: [
    auditRetentionAccess
  ]
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource journalTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: journalTableName
}

resource auditTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: auditTableName
}

// Re-wrap work items and their checkpoints (rotation/rewrap/checkpoint.py; no setting names it).
resource rewrapTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: rewrapTableName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource rewrapQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: rewrapQueueName
}

resource rewrapPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${rewrapQueueName}-poison'
}

// Rotations dispatched to the queue-triggered runner (rotation/service/deps.py; no setting names it).
resource runQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: runQueueName
}

resource runPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${runQueueName}-poison'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy is offered only in some regions; set properties.zoneRedundant where the region supports it. Missed events are caught by the reconcile timer.
  name: '${namePrefix}-plan-${suffix}'
  location: location
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid delivers Key Vault events to the function over its public endpoint; the HTTP API requires function keys (auth level FUNCTION).
  // checkov:skip=CKV_AZURE_17: Event Grid cannot present a client certificate when it delivers events; callers of the HTTP API authenticate with function keys.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales to zero by design; a rotation that is not running loses nothing, and the reconcile timer catches missed events.
  // checkov:skip=CKV_AZURE_213: Flex Consumption does not use App Service health check (instances are managed by the platform); the app exposes GET /api/health for external probes.
  name: functionAppName
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD'
        }
        {
          name: 'ROTATION_MANAGED_KEYS'
          value: managedKeys
        }
        {
          name: 'ROTATION_SUBSCRIPTIONS'
          value: join(consumerSubscriptionIds, ',')
        }
        {
          name: 'ROTATION_DATA_LOCATIONS'
          value: join(dataLocationUris, ',')
        }
        {
          name: 'ROTATION_AUDIT_SIGNING_KEY'
          value: auditSigningKeyUri
        }
        {
          name: 'ROTATION_ARM_ENDPOINT'
          value: environment().resourceManager
        }
        {
          name: 'ROTATION_RETIRE_GRACE_HOURS'
          value: retireGraceHours
        }
        {
          name: 'ROTATION_NEAR_EXPIRY_DAYS'
          value: nearExpiryDays
        }
        {
          name: 'ROTATION_RECONCILE_SCHEDULE'
          value: reconcileSchedule
        }
        {
          name: 'ROTATION_JOURNAL_TABLE'
          value: journalTableName
        }
        {
          name: 'ROTATION_AUDIT_TABLE'
          value: auditTableName
        }
        {
          name: 'ROTATION_REWRAP_QUEUE'
          value: rewrapQueueName
        }
        {
          name: 'ROTATION_LOG_FORMAT'
          value: 'json'
        }
      ]
    }
  }
}

// The Functions host, journal, locks, audit records and re-wrap queue: identity-based
// AzureWebJobsStorage on this one account.
resource hostBlobAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'CMK rotation: Storage Blob Data Owner on function storage account'
  }
}

resource hostQueueAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'CMK rotation: Storage Queue Data Contributor on function storage account'
  }
}

resource hostTableAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'CMK rotation: Storage Table Data Contributor on function storage account'
  }
}

resource telemetryAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionApp.id, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'CMK rotation: Monitoring Metrics Publisher on application insights'
  }
}

module discovery 'modules/subscriptionAccess.bicep' = [for s in consumerSubscriptionIds: {
  name: 'cmk-rotation-discovery-${uniqueString(s, suffix)}'
  scope: subscription(s)
  params: {
    principalId: functionApp.identity.principalId
    roleDefinitionId: roles.outputs.readerRoleId
    assignmentDescription: 'CMK rotation: CMK Rotation Reader on consumer subscription'
  }
}]

module vaultAccess 'modules/vaultAccess.bicep' = [for v in vaults: {
  name: 'cmk-rotation-vault-${uniqueString(v.subscriptionId, v.resourceGroup, v.name)}'
  scope: resourceGroup(v.subscriptionId, v.resourceGroup)
  params: {
    vaultName: v.name
    keyNames: v.keyNames
    auditSigningKeyName: v.name == auditSigningKeyVaultName ? auditSigningKeyName : ''
    principalId: functionApp.identity.principalId
    consumerPrincipalIds: consumerPrincipalIds
    keyOperatorRoleId: roles.outputs.keyOperatorRoleId
    auditSignerRoleId: roles.outputs.auditSignerRoleId
  }
}]

// Event Grid dead-letters undeliverable events into this container with the system topic's own identity.
resource deadLetterAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (v, i) in vaults: {
  name: guid(deadLetterContainer.id, v.subscriptionId, v.resourceGroup, v.name, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: vaultAccess[i].outputs.systemTopicPrincipalId
    principalType: 'ServicePrincipal'
    description: 'CMK rotation: Storage Blob Data Contributor on dead-letter container'
  }
}]

module eventSubscriptions 'modules/eventSubscription.bicep' = [for (v, i) in vaults: if (deployEventSubscriptions) {
  name: 'cmk-rotation-events-${uniqueString(v.subscriptionId, v.resourceGroup, v.name)}'
  scope: resourceGroup(v.subscriptionId, v.resourceGroup)
  params: {
    systemTopicName: vaultAccess[i].outputs.systemTopicName
    keyNames: v.keyNames
    functionResourceId: '${functionApp.id}/functions/${eventFunctionName}'
    deadLetterStorageAccountId: storage.id
    deadLetterContainerName: deadLetterContainerName
  }
  dependsOn: [
    deadLetterAccess
  ]
}]

module consumerAccess 'modules/resourceGroupAccess.bicep' = [for g in consumerResourceGroups: {
  name: 'cmk-rotation-consumers-${uniqueString(g.subscriptionId, g.resourceGroup, suffix)}'
  scope: resourceGroup(g.subscriptionId, g.resourceGroup)
  params: {
    principalId: functionApp.identity.principalId
    roleDefinitionId: roles.outputs.consumerOperatorRoleId
    assignmentDescription: 'CMK rotation: CMK Rotation Consumer Operator on consumer resource group'
  }
}]

module dataAccess 'modules/containerAccess.bicep' = [for d in dataLocations: {
  name: 'cmk-rotation-data-${uniqueString(d.subscriptionId, d.resourceGroup, d.storageAccountName, d.containerName)}'
  scope: resourceGroup(d.subscriptionId, d.resourceGroup)
  params: {
    storageAccountName: d.storageAccountName
    containerName: d.containerName
    principalId: functionApp.identity.principalId
  }
}]

@description('Name of the Function app (for func azure functionapp publish / zip deploy).')
output functionAppName string = functionApp.name

@description('Object id of the Function app\'s system-assigned identity.')
output principalId string = functionApp.identity.principalId

@description('Storage account behind AzureWebJobsStorage (journal, locks, audit, queues, dead letters).')
output storageAccountName string = storage.name

@description('Versionless URIs of the managed keys, as set in ROTATION_MANAGED_KEYS.')
output managedKeys string = managedKeys
