"""Persistence: SQLAlchemy models, async engine, repositories and Alembic migrations."""
