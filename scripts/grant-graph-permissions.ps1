# Grants the app's managed identity its Microsoft Graph application permissions
# (infra/graph-permissions.json). azd runs it as the postprovision hook on Windows (azure.yaml); an
# administrator can run it alone. Options and who may run it: scripts/grant_graph_permissions.py,
# docs/deploy.md.
$ErrorActionPreference = 'Stop'
$python = if (Get-Command python3 -ErrorAction SilentlyContinue) { 'python3' } else { 'python' }
& $python (Join-Path $PSScriptRoot 'grant_graph_permissions.py') @args
exit $LASTEXITCODE
