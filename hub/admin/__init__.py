"""Admin surfaces: REST API, web page and CLI for OAuth clients, their grants and dead letters."""
