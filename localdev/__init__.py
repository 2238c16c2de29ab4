"""Development-only helpers: start the local world (Azurite, the Graph simulator). Not deployed."""
