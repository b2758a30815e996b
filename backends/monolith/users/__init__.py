"""users: local accounts mirroring the auth-service's identities (created on first sight)."""
