"""The web UI: server-rendered pages at ``/`` for the operator (sign-in with the admin credential)."""
