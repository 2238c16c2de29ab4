// Microsoft Graph application permissions (app roles) for the app's managed identity, through the
// Microsoft Graph Bicep extension (infra/bicepconfig.json). Deployed only with
// graphPermissionsGrant=bicep: the deploying user then needs Privileged Role Administrator or Global
// Administrator (delegated AppRoleAssignment.ReadWrite.All + Application.Read.All). Otherwise
// scripts/grant-graph-permissions.sh grants the same list.
//
// The list is infra/graph-permissions.json, nothing else: tests/static/test_graph_permissions.py
// checks that it equals shared.graph.required_roles() and that no role is named here.
extension microsoftGraphV1

@description('Object id of the managed identity service principal that receives the app roles.')
param principalId string

var graph = loadJsonContent('../graph-permissions.json')

// Microsoft Graph's own service principal in this tenant (well-known appId).
resource graphServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graph.resourceAppId
}

// One assignment per permission; the app role id is looked up by its value (e.g. User.Read.All) in the
// Graph service principal's appRoles, so no role id is copied by hand.
resource appRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for permission in graph.applicationPermissions: {
    principalId: principalId
    resourceId: graphServicePrincipal.id
    appRoleId: filter(graphServicePrincipal.appRoles, role => role.value == permission && contains(role.allowedMemberTypes, 'Application'))[0].id
  }
]

output grantedPermissions array = graph.applicationPermissions
