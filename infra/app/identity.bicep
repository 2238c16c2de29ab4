// The user-assigned managed identity the function app runs as (storage, Application Insights, Graph).
param name string
param location string = resourceGroup().location
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
// Object id of the identity's service principal: what role and app role assignments name.
output principalId string = identity.properties.principalId
// Application (client) id: AZURE_CLIENT_ID for DefaultAzureCredential, the AppId of an Exchange
// application access policy.
output clientId string = identity.properties.clientId
