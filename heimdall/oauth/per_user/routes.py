"""Every route of per-user OAuth: the pages (connection links, connections page) and the grants API."""

from __future__ import annotations

from fastapi import APIRouter

from heimdall.oauth.per_user import api, pages

router = APIRouter()
router.include_router(pages.router)
router.include_router(api.router)
