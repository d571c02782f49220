// One role assignment at subscription scope: the read-only CMK Rotation Reader, so the planner can
// list storage accounts and ML workspaces by subscription. Nothing that writes is assigned here.

targetScope = 'subscription'

@description('Object id of the Function app\'s managed identity.')
param principalId string

@description('Resource id of the role definition to assign (CMK Rotation Reader).')
param roleDefinitionId string

@description('Description recorded on the assignment; names the role and the scope.')
param assignmentDescription string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}
