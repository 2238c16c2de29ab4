// The Flex Consumption plan and function app (Python 3.11), running as the user-assigned identity.
param name string
param planName string
param location string = resourceGroup().location
param tags object = {}
@description('azd service name (azure.yaml); azd finds the app by this tag.')
param serviceName string = 'api'
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048
@description('The app\'s own settings (LICENSING_*), from main.bicep.')
param appSettings object

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Settings of the Functions host and the SDKs, not read by the app's code:
// - AzureWebJobsStorage__*: identity-based host storage (no connection string, no account key). Blob for
//   timer leases and locks; queue for the run queue (the trigger's connection is AzureWebJobsStorage,
//   shared/queue.py sends with __queueServiceUri); table for host features that use it.
// - APPLICATIONINSIGHTS_*: the connection string names the resource (it is not a secret: the resource
//   refuses local-auth ingestion); the authentication string makes the host send with the identity.
// - AZURE_CLIENT_ID: which user-assigned identity DefaultAzureCredential uses (shared/credentials.py,
//   shared/store.py).
// Flex Consumption sets the runtime in functionAppConfig, so no FUNCTIONS_WORKER_RUNTIME or
// FUNCTIONS_EXTENSION_VERSION here (Flex rejects them).
var hostAppSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  AZURE_CLIENT_ID: identityClientId
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Not zone redundant: a zone outage delays one nightly run, which the next run (or a manual POST /api/runs) makes up; zone redundancy would limit the regions and add always-ready cost.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // Suppressions, each with its reason (tests/static/test_checkov.py requires one):
  // checkov:skip=CKV_AZURE_222: Public network access stays on: operators call the HTTP API (/api/runs, /api/status, /api/dashboard) over the internet with a function key, and this template has no virtual network or private endpoint to reach them through.
  // checkov:skip=CKV_AZURE_17: No client certificates: callers authenticate with a function key (auth level FUNCTION); requiring mTLS would need a certificate on every operator's machine.
  // checkov:skip=CKV_AZURE_212: No always-ready instances for failover: the work is one nightly timer run plus rare manual runs; a cold start costs seconds, an idle instance costs every hour.
  // checkov:skip=CKV_AZURE_213: No health check path: the app has no anonymous health endpoint (GET /api/status needs a function key, which the platform probe cannot send), and a failed run is already visible as a failed invocation and a failed run record.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: union(appSettings, hostAppSettings)
  }

  // No basic-auth (publishing password) deployments: azd deploys to the Flex deployment container with
  // Entra ID. (Flex Consumption has no FTP; ftpsState above covers the checkov FTP check.)
  resource scmBasicAuth 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: {
      allow: false
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
