// One role assignment at resource-group scope: CMK Rotation Consumer Operator on a resource group
// that holds consumers (storage accounts, ML workspaces) to re-point.

targetScope = 'resourceGroup'

@description('Object id of the Function app\'s managed identity.')
param principalId string

@description('Resource id of the role definition to assign (CMK Rotation Consumer Operator).')
param roleDefinitionId string

@description('Description recorded on the assignment; names the role and the scope.')
param assignmentDescription string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}
