"""The database schema, in one place, as numbered migrations every backend applies at start.

Written in the SQL SQLite and PostgreSQL share; the two spellings that differ (an auto-numbered id,
binary data) come from the driver. Discord ids are 64-bit (BIGINT), times are unix seconds and
money is dollars (DOUBLE PRECISION). `guild_id` is 0 for direct messages in the usage tables.

Migration 1 is the schema the bot had before migrations were numbered, so a database made by an
older version takes it as a no-op (every statement is IF NOT EXISTS).
"""
from __future__ import annotations

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at DOUBLE PRECISION NOT NULL
)"""

_V1 = """
CREATE TABLE IF NOT EXISTS conversations (
    id {serial},
    channel_id BIGINT UNIQUE,           -- the thread or DM channel whose messages continue it
    guild_id BIGINT,
    owner_id BIGINT NOT NULL,
    head_turn_id BIGINT,
    settings TEXT NOT NULL DEFAULT '{{}}',  -- the conversation's options (JSON)
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id {serial},
    conversation_id BIGINT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id BIGINT REFERENCES turns(id) ON DELETE SET NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'model')),
    text TEXT NOT NULL DEFAULT '',
    provider_state TEXT,
    provider TEXT,
    model TEXT,
    message_id BIGINT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_message ON turns(message_id);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns(conversation_id);
CREATE TABLE IF NOT EXISTS images (
    turn_id BIGINT NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    mime_type TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    data {blob} NOT NULL,
    PRIMARY KEY (turn_id, position)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,               -- queued, running, done, failed, cancelled, interrupted
    user_id BIGINT NOT NULL,
    guild_id BIGINT,
    channel_id BIGINT,
    message_id BIGINT,                  -- the status message that becomes the result
    conversation_id BIGINT REFERENCES conversations(id) ON DELETE SET NULL,
    user_turn_id BIGINT REFERENCES turns(id) ON DELETE SET NULL,
    model_turn_id BIGINT REFERENCES turns(id) ON DELETE SET NULL,
    options TEXT NOT NULL DEFAULT '{{}}',
    error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status);
CREATE TABLE IF NOT EXISTS usage (
    id {serial},
    guild_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    job_id TEXT,
    conversation_id BIGINT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,               -- reserved, charged, failed, refused, cancelled, interrupted, released
    provider TEXT,
    model TEXT,
    resolution TEXT,
    requested_images INTEGER NOT NULL,
    estimated_cost DOUBLE PRECISION NOT NULL,
    images INTEGER NOT NULL,            -- what counts against quotas: requested while reserved, real once charged
    cost DOUBLE PRECISION NOT NULL,
    input_tokens BIGINT,
    output_tokens BIGINT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_by_member ON usage(guild_id, user_id, created_at);
CREATE INDEX IF NOT EXISTS usage_by_guild ON usage(guild_id, created_at);
CREATE INDEX IF NOT EXISTS usage_by_status ON usage(status);
CREATE TABLE IF NOT EXISTS quota_resets (
    guild_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    reset_at DOUBLE PRECISION NOT NULL,
    reset_by BIGINT,
    PRIMARY KEY (guild_id, user_id)
);
CREATE TABLE IF NOT EXISTS limit_overrides (
    guild_id BIGINT NOT NULL,
    scope TEXT NOT NULL,                -- 'guild', or 'role:<role id>'
    name TEXT NOT NULL,                 -- a core.limits.FIELDS name
    value DOUBLE PRECISION,             -- NULL: unlimited
    updated_by BIGINT,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (guild_id, scope, name)
);
CREATE TABLE IF NOT EXISTS member_settings (
    user_id BIGINT PRIMARY KEY,
    settings TEXT NOT NULL DEFAULT '{{}}',  -- the member's defaults for /imagine (JSON)
    updated_at DOUBLE PRECISION NOT NULL
)"""

# Several processes share one database: each registers here and heartbeats; jobs and usage
# reservations name the process that holds them (NULL: made before owners existed), so a process
# that starts only takes over what a process that is gone left behind.
_V2 = """
CREATE TABLE IF NOT EXISTS processes (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,                 -- all, gateway or worker
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    shard_ids TEXT NOT NULL DEFAULT '', -- comma list, '' for no gateway connection
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE usage ADD COLUMN owner TEXT;
CREATE INDEX IF NOT EXISTS usage_by_user ON usage(user_id, status, created_at)"""

# On PostgreSQL, jobs wait in a durable queue and may run on another process than the one that took
# them: the job row says where its member is waiting (the interaction webhook or the channel and its
# status message, JSON) and which queue job carries it.
_V3 = """
ALTER TABLE jobs ADD COLUMN delivery TEXT;
ALTER TABLE jobs ADD COLUMN queue_id BIGINT"""

# version -> statements; append new versions, never edit an applied one.
MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3}


def statements(version: int, *, serial: str, blob: str) -> list[str]:
    """One migration's statements in a driver's spelling."""
    sql = MIGRATIONS[version].format(serial=serial, blob=blob)
    return [s.strip() for s in sql.split(";") if s.strip()]
