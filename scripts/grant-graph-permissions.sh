#!/bin/sh
# Grants the app's managed identity its Microsoft Graph application permissions
# (infra/graph-permissions.json). azd runs it as the postprovision hook (azure.yaml); an administrator
# can run it alone. Options and who may run it: scripts/grant_graph_permissions.py, docs/deploy.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || python=python
exec "$python" "$here/grant_graph_permissions.py" "$@"
