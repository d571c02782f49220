// Storage Blob Data Contributor on one container of client-side-encrypted blobs, never the account:
// the re-wrap lists blobs with metadata and rewrites their encryption metadata.

targetScope = 'resourceGroup'

@description('Storage account holding the container.')
param storageAccountName string

@description('Container of client-side-encrypted blobs.')
param containerName string

@description('Object id of the Function app\'s managed identity.')
param principalId string

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: containerName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, principalId, storageBlobDataContributor)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'CMK rotation: Storage Blob Data Contributor on data container'
  }
}
