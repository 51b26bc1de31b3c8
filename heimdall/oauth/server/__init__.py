"""Heimdall as the OAuth 2.1 authorization server of its own ``/mcp`` endpoint.

Modules, one job each:

* ``urls`` — the public URLs (issuer, resource, endpoints), always from the configured base URL (W15).
* ``metadata`` — RFC 9728 and RFC 8414 documents, and the availability gate.
* ``clients`` — RFC 7591 registration and client lookup; ``cimd`` — Client ID Metadata Documents.
* ``authorize`` — the authorization request (RFC 6749 §4.1.1, RFC 7636, RFC 8707, RFC 9207).
* ``consent`` — the browser-bound consent flow and its Finish step.
* ``tokens`` — codes, access and refresh tokens: issue, exchange, rotate, revoke.
* ``bearer`` — verifying access tokens on ``/mcp`` (RFC 6750) and the scope each MCP method needs.
* ``sweeper`` — housekeeping of expired rows (W25); ``pages`` — the server-rendered HTML.
"""
