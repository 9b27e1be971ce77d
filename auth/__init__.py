"""OAuth 2.0 consumers of rthub: client registry, tokens and administration."""
