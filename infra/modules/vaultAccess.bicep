// Everything on one key vault: the Event Grid system topic, and role assignments at the narrowest
// scope, the key. Deployed into the vault's resource group. (The vault's own properties, soft delete and
// purge protection, are read through CMK Rotation Reader on the consumer subscription that holds it.)

targetScope = 'resourceGroup'

@description('Name of the key vault (Azure RBAC permission model).')
param vaultName string

@description('Names of the managed keys in this vault.')
param keyNames array

@description('Name of the audit signing key if it is in this vault, else empty.')
param auditSigningKeyName string = ''

@description('Object id of the Function app\'s managed identity.')
param principalId string

@description('Object ids of the consumers\' managed identities; each gets Key Vault Crypto Service Encryption User on each key.')
param consumerPrincipalIds array = []

@description('Resource id of the CMK Rotation Key Operator role.')
param keyOperatorRoleId string

@description('Resource id of the CMK Rotation Audit Signer role.')
param auditSignerRoleId string

var cryptoServiceEncryptionUser = 'e147488a-f6f5-4113-8e2d-b22465e65bf6'
var consumerCount = length(consumerPrincipalIds)

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource keys 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = [for k in keyNames: {
  parent: vault
  name: k
}]

resource auditKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = if (!empty(auditSigningKeyName)) {
  parent: vault
  name: empty(auditSigningKeyName) ? 'none' : auditSigningKeyName
}

resource keyOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (k, i) in keyNames: {
  name: guid(keys[i].id, principalId, keyOperatorRoleId)
  scope: keys[i]
  properties: {
    roleDefinitionId: keyOperatorRoleId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'CMK rotation: CMK Rotation Key Operator on managed key'
  }
}]

resource auditSigner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(auditSigningKeyName)) {
  name: guid(auditKey.id, principalId, auditSignerRoleId)
  scope: auditKey
  properties: {
    roleDefinitionId: auditSignerRoleId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'CMK rotation: CMK Rotation Audit Signer on audit signing key'
  }
}

// The consumers' own identities read, wrap and unwrap with the key they are encrypted with.
resource consumerKeyUse 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for n in range(0, length(keyNames) * consumerCount): {
  name: guid(keys[n / consumerCount].id, consumerPrincipalIds[n % consumerCount], cryptoServiceEncryptionUser)
  scope: keys[n / consumerCount]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cryptoServiceEncryptionUser)
    principalId: consumerPrincipalIds[n % consumerCount]
    principalType: 'ServicePrincipal'
    description: 'CMK rotation: Key Vault Crypto Service Encryption User on managed key'
  }
}]

// Key Vault events (KeyNearExpiry, KeyExpired, KeyNewVersionCreated) come from this topic. Its own
// identity writes dead letters (see main.bicep).
resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: '${vaultName}-cmk-rotation'
  location: vault.location
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

@description('Name of the vault\'s Event Grid system topic.')
output systemTopicName string = systemTopic.name

@description('Object id of the system topic\'s identity (writes dead letters).')
output systemTopicPrincipalId string = systemTopic.identity.principalId
