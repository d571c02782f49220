// The custom roles of the CMK rotation service: each grants exactly the actions one group of steps
// needs (docs/permissions.md, step-to-permission table). Definitions only; assignments are made at
// the narrowest scope by the other modules.

targetScope = 'subscription'

@description('Prefix that makes the role names unique in the tenant.')
param namePrefix string

@description('Subscriptions in which the roles may be assigned (consumers, vaults and data live there).')
param assignableSubscriptionIds array

var assignableScopes = [for s in assignableSubscriptionIds: '/subscriptions/${s}']

// Key Vault data plane, assigned per managed key: plan, new version, verify, re-wrap, retire.
resource keyOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, namePrefix, 'cmk-rotation-key-operator')
  properties: {
    roleName: 'CMK Rotation Key Operator (${namePrefix})'
    description: 'Read, create versions of, update (tags, enable, disable), wrap and unwrap with a managed key; read its rotation policy. No rotate, delete, purge, import, backup, encrypt or decrypt.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.KeyVault/vaults/keys/read'
          'Microsoft.KeyVault/vaults/keyrotationpolicies/read'
          'Microsoft.KeyVault/vaults/keys/create/action'
          'Microsoft.KeyVault/vaults/keys/update/action'
          'Microsoft.KeyVault/vaults/keys/wrap/action'
          'Microsoft.KeyVault/vaults/keys/unwrap/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

// Key Vault data plane, assigned on the audit signing key only.
resource auditSigner 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, namePrefix, 'cmk-rotation-audit-signer')
  properties: {
    roleName: 'CMK Rotation Audit Signer (${namePrefix})'
    description: 'Read the audit signing key and sign and verify audit checkpoints with it.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.KeyVault/vaults/keys/read'
          'Microsoft.KeyVault/vaults/keys/sign/action'
          'Microsoft.KeyVault/vaults/keys/verify/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

// ARM reads, assigned per consumer subscription (list by subscription) and per vault.
resource reader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, namePrefix, 'cmk-rotation-reader')
  properties: {
    roleName: 'CMK Rotation Reader (${namePrefix})'
    description: 'Read storage accounts, ML workspaces, container registries, disk encryption sets and key vaults, and query Resource Graph (metadata only: no keys, no data, no list-keys).'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/read'
          'Microsoft.MachineLearningServices/workspaces/read'
          'Microsoft.KeyVault/vaults/read'
          'Microsoft.ContainerRegistry/registries/read'
          'Microsoft.Compute/diskEncryptionSets/read'
          'Microsoft.ResourceGraph/resources/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

// ARM writes, assigned per consumer resource group: re-point encryption to the new key version.
resource consumerOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, namePrefix, 'cmk-rotation-consumer-operator')
  properties: {
    roleName: 'CMK Rotation Consumer Operator (${namePrefix})'
    description: 'Read and update storage accounts, ML workspaces, container registries and disk encryption sets (encryption key) and poll their update operations. No delete, no list-keys, no role changes.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/read'
          'Microsoft.Storage/storageAccounts/write'
          'Microsoft.MachineLearningServices/workspaces/read'
          'Microsoft.MachineLearningServices/workspaces/write'
          'Microsoft.MachineLearningServices/locations/workspaceOperationsStatus/read'
          'Microsoft.ContainerRegistry/registries/read'
          'Microsoft.ContainerRegistry/registries/write'
          'Microsoft.Compute/diskEncryptionSets/read'
          'Microsoft.Compute/diskEncryptionSets/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

// ARM actions on the audit container only, assigned to the deployment script that creates and locks its
// time-based retention policy (WORM). No delete: a locked policy can then only be extended.
resource auditRetentionLocker 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, namePrefix, 'cmk-rotation-audit-retention-locker')
  properties: {
    roleName: 'CMK Rotation Audit Retention Locker (${namePrefix})'
    description: 'Read, create, extend and lock the time-based retention policy of the audit container. No delete, no blob access.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/read'
          'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/write'
          'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/extend/action'
          'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies/lock/action'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: assignableScopes
  }
}

@description('Resource id of the CMK Rotation Key Operator role.')
output keyOperatorRoleId string = keyOperator.id

@description('Resource id of the CMK Rotation Audit Signer role.')
output auditSignerRoleId string = auditSigner.id

@description('Resource id of the CMK Rotation Reader role.')
output readerRoleId string = reader.id

@description('Resource id of the CMK Rotation Consumer Operator role.')
output consumerOperatorRoleId string = consumerOperator.id

@description('Resource id of the CMK Rotation Audit Retention Locker role.')
output auditRetentionLockerRoleId string = auditRetentionLocker.id
