// The multi-tenant app registration customer tenants consent to, with the function app's
// user-assigned managed identity as its only credential (no secret, no certificate). Deployed only
// with multiTenant=true, through the Microsoft Graph Bicep extension (infra/bicepconfig.json); the
// deploying user needs Application Developer (or Application Administrator) in the home tenant.
//
// The app asks for the Microsoft Graph application permissions the managed identity gets
// (infra/graph-permissions.json, the one list) except its homeTenantOnly ones (sending mail):
// alert mail leaves from the deployment's own mailbox through the home tenant, never from a
// customer's, so no customer grants sending as its mailboxes. A customer's administrator grants
// them in their tenant with the admin-consent URL (docs/deploy.md, Many tenants). The engine then exchanges the
// identity's token for the app's token in that tenant (shared/credentials.py TenantAppCredential):
// "Configure an application to trust a managed identity",
// https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
extension microsoftGraphV1

@description('Display name customers see on the consent screen and under Enterprise applications.')
param displayName string

@description('Unique name of the app registration (the Graph extension finds it again by this on every deployment).')
param uniqueName string

@description('Object (principal) id of the user-assigned managed identity: the federated credential\'s subject.')
param managedIdentityPrincipalId string

@description('Where Entra sends the administrator after consent (the function app\'s own address).')
param consentRedirectUri string

var graph = loadJsonContent('../graph-permissions.json')
var customerPermissions = filter(graph.applicationPermissions, permission => !contains(graph.homeTenantOnly.permissions, permission))

// The managed identity's tokens come from the home tenant's v2.0 issuer
// (https://login.microsoftonline.com/<home tenant>/v2.0 in global Azure), for the token-exchange
// audience; the app trusts exactly that issuer, subject and audience. Global Azure only, as the
// Graph URL main.bicep sets (national clouds have other token-exchange audiences).
var issuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
var tokenExchangeAudience = 'api://AzureADTokenExchange'

// Microsoft Graph's own service principal in the home tenant (well-known appId): its appRoles
// give each permission's id, so no role id is copied by hand.
resource graphServicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graph.resourceAppId
}

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMultipleOrgs'
  web: {
    redirectUris: [
      consentRedirectUri
    ]
  }
  // What admin consent grants in a customer tenant: application permissions (type Role) only.
  requiredResourceAccess: [
    {
      resourceAppId: graph.resourceAppId
      resourceAccess: [
        for permission in customerPermissions: {
          id: filter(graphServicePrincipal.appRoles, role => role.value == permission && contains(role.allowedMemberTypes, 'Application'))[0].id
          type: 'Role'
        }
      ]
    }
  ]
}

resource managedIdentityCredential 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = {
  name: '${app.uniqueName}/function-app-identity'
  description: 'The function app\'s user-assigned managed identity signs in as this app (no secret).'
  issuer: issuer
  subject: managedIdentityPrincipalId
  audiences: [
    tokenExchangeAudience
  ]
}

// Application (client) id: LICENSING_MULTITENANT_APP_ID, and the client_id of the consent URL.
output appId string = app.appId
output requestedPermissions array = customerPermissions
