"""``heimdall demo``: the gateway, a per-user OAuth "notes" MCP service and a scripted model, on loopback.

``notes`` (with ``notes_auth`` and ``login_page``) is the upstream service, ``scripted_model`` the
fake LLM provider, ``config`` the gateway's demo configuration, ``runner`` starts everything and
``walkthrough`` is what the command prints.
"""
