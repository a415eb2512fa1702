"""catalog: an unstemmed full-text index beside the stemmed one, for prefixes of words

Revision ID: c002
Revises: c001
Create Date: 2026-11-27 21:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "c002"
down_revision = "c001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A stemmed index cannot match a prefix longer than the stem (`hospita` is not a prefix of
    # `hospit`); the search looks words up in both.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE dataset_fts_words USING fts5("
            "title, body, tokenize = 'unicode61 remove_diacritics 2')"
        )
        op.execute(
            "INSERT INTO dataset_fts_words(rowid, title, body) "
            "SELECT rowid, title, body FROM dataset_fts"
        )
    else:
        op.execute(
            "CREATE INDEX ix_dataset_search_words ON dataset "
            "USING gin (to_tsvector('simple', search_text))"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS dataset_fts_words")
    else:
        op.execute("DROP INDEX IF EXISTS ix_dataset_search_words")
