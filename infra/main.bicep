// Group licensing enforcer on Azure Functions (Flex Consumption, Python 3.11), for `azd up`.
//
// Shaped like the Azure Functions azd quickstarts (functions-quickstart-python-http-azd): subscription
// scope, one resource group, names from uniqueString() plus abbreviations.json, a user-assigned
// managed identity, storage without shared keys, Application Insights with Entra authentication on a
// Log Analytics workspace, role assignments in app/rbac.bicep.
//
// Plain resources rather than Azure Verified Modules (br/public:avm/...): checkov (tests/static)
// parses Bicep without the Bicep CLI and cannot fetch registry modules, so resources hidden in AVM
// modules would go unchecked. Each module here is a few plain resources instead.
//
// Microsoft Graph application permissions: infra/graph-permissions.json is the single list (it must
// equal shared.graph.required_roles(), tests/static/test_graph_permissions.py). They are granted
// either here, by app/graph-permissions.bicep (Microsoft Graph Bicep extension; the deploying user
// must hold Privileged Role Administrator or Global Administrator), or by
// scripts/grant-graph-permissions.sh, which azure.yaml runs as the postprovision hook and which an
// administrator can run on their own. docs/deploy.md explains both.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used for the resource group name and the unique token in every name.')
param environmentName string

@minLength(1)
@description('Region of every resource. It must offer Flex Consumption: az functionapp list-flexconsumption-locations.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Who grants the Graph application permissions: bicep (this deployment, Graph Bicep extension; needs Privileged Role Administrator) or script (postprovision hook / an administrator runs scripts/grant-graph-permissions.sh).')
@allowed([
  'bicep'
  'script'
])
param graphPermissionsGrant string = 'script'

@description('Enforce many customer tenants: creates a multi-tenant app registration with the managed identity as its federated credential (app/multitenant-app.bicep; needs Application Developer in this tenant) and sets LICENSING_MULTITENANT_APP_ID. docs/deploy.md, Many tenants.')
param multiTenant bool = false

@description('Resource group name; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Maximum instances of the Flex Consumption app. Runs are few and Graph throttles per app, so keep it low.')
param maximumInstanceCount int = 40

@description('Memory per instance (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// The app's own settings. Each maps to an azd environment variable of the same name as the app
// setting (main.parameters.json); empty means the app's default, spelled out below so the deployed
// value is visible in the portal.
@description('LICENSING_POLICY_PATH: the policy file, relative to the app root. Empty: policy/licensing-policy.yaml.')
param policyPath string = ''

@description('LICENSING_TIMER_SCHEDULE: NCRONTAB (six fields, UTC). Empty: 0 0 2 * * * (02:00 UTC).')
param timerSchedule string = ''

@description('LICENSING_TIMER_MODE: what the nightly run does. Empty: plan (report only, changes nothing).')
@allowed([
  ''
  'plan'
  'apply'
])
param timerMode string = ''

@description('LICENSING_TABLE_PREFIX: prefix of the Table Storage table names. Empty: lic.')
param tablePrefix string = ''

@description('LICENSING_ALERT_MAILBOX: mailbox (UPN) alerts are sent from; empty disables mail. Limit the send-mail permission of the app to this mailbox (docs/deploy.md).')
param alertMailbox string = ''

@description('LICENSING_ALERT_RECIPIENTS: comma-separated addresses that receive alerts (required with a mailbox).')
param alertRecipients string = ''

@description('LICENSING_MAX_CONCURRENCY: ceiling of groups read at once (adaptive below it), 1..64. Empty: 32.')
param maxConcurrency string = ''

@description('LICENSING_RUN_QUEUE: storage queue (in the host storage) of runs started over HTTP. Empty: licensing-runs.')
param runQueue string = ''

@description('LICENSING_MEASURE_WAIT_SECONDS: after writes, seconds to wait for Graph to process licences before measuring seats, 0..900. Empty: 120.')
param measureWaitSeconds string = ''
@description('LICENSING_HTTP_APPLY_WITHOUT_AUTH: true lets the function key alone start apply runs over HTTP while App Service Authentication is off. Empty: false (apply over HTTP needs Authentication and the Licensing.Operator app role).')
param httpApplyWithoutAuth string = ''

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentStorageContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'

// Every LICENSING_* setting the app reads in Azure: the keys of local.settings.sample.json, except the
// two that only make sense locally (tests/static/test_app_settings.py keeps them in step):
//   LICENSING_SIM_TOKEN_URL             the local Graph simulator's token endpoint
//   LICENSING_TABLES_CONNECTION_STRING  a connection string holds an account key; in Azure the app
//                                       uses LICENSING_TABLES_ENDPOINT with its managed identity, and
//                                       the storage account refuses shared keys anyway.
//   LICENSING_TENANTS_FILE              local use; in Azure the tenants table is the registry.
// LICENSING_MULTITENANT_APP_ID is not an azd variable: it is the app registration multiTenant creates.
var licensingAppSettings = {
  LICENSING_POLICY_PATH: empty(policyPath) ? 'policy/licensing-policy.yaml' : policyPath
  LICENSING_TIMER_SCHEDULE: empty(timerSchedule) ? '0 0 2 * * *' : timerSchedule
  LICENSING_TIMER_MODE: empty(timerMode) ? 'plan' : timerMode
  LICENSING_GRAPH_BASE_URL: 'https://graph.microsoft.com/v1.0'
  LICENSING_GRAPH_CREDENTIAL: 'managed-identity'
  LICENSING_TABLES_ENDPOINT: storage.outputs.tableEndpoint
  LICENSING_TABLE_PREFIX: empty(tablePrefix) ? 'lic' : tablePrefix
  LICENSING_ALERT_MAILBOX: alertMailbox
  LICENSING_ALERT_RECIPIENTS: alertRecipients
  LICENSING_MAX_CONCURRENCY: empty(maxConcurrency) ? '32' : maxConcurrency
  LICENSING_RUN_QUEUE: empty(runQueue) ? 'licensing-runs' : runQueue
  LICENSING_MEASURE_WAIT_SECONDS: empty(measureWaitSeconds) ? '120' : measureWaitSeconds
  LICENSING_HTTP_APPLY_WITHOUT_AUTH: empty(httpApplyWithoutAuth) ? 'false' : httpApplyWithoutAuth
  LICENSING_MULTITENANT_APP_ID: multiTenant ? multitenantApp.outputs.appId : ''
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

// The app's only identity: storage, Application Insights and Microsoft Graph all see this principal.
module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentStorageContainerName
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principalId: identity.outputs.principalId
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentStorageContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appSettings: licensingAppSettings
  }
  // The host reaches storage and Application Insights with the identity from its first start.
  dependsOn: [
    rbac
  ]
}

// Customer tenants: the app registration they consent to, the identity as its credential. Its
// redirect URI is the function app's default host name, built from the name (api's output would
// make api and this module depend on each other through the app setting).
module multitenantApp 'app/multitenant-app.bicep' = if (multiTenant) {
  name: 'multitenantApp'
  scope: rg
  params: {
    displayName: 'Group licensing enforcer (${environmentName})'
    uniqueName: 'group-licensing-${resourceToken}'
    managedIdentityPrincipalId: identity.outputs.principalId
    consentRedirectUri: 'https://${functionAppName}.azurewebsites.net/'
  }
}

module graphPermissions 'app/graph-permissions.bicep' = if (graphPermissionsGrant == 'bicep') {
  name: 'graphPermissions'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output GRAPH_PERMISSIONS_GRANT string = graphPermissionsGrant
// The multi-tenant app's client id (empty unless multiTenant): the consent URL's client_id.
output MULTITENANT_APP_ID string = multiTenant ? multitenantApp.outputs.appId : ''
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
