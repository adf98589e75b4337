-- Tables of the PostgreSQL persistence example (README.md here). Create them once:
--   psql -h 127.0.0.1 -U postgres -d test -f examples/persistence/postgres/schema.sql

-- One row per client: its last connect and disconnect.
CREATE TABLE IF NOT EXISTS mqtt_client (
    clientid        TEXT PRIMARY KEY,
    username        TEXT,
    peerhost        TEXT,
    online          BOOLEAN NOT NULL,
    connected_at    TIMESTAMPTZ,
    disconnected_at TIMESTAMPTZ,
    reason          TEXT
);

-- The client's current subscriptions (a row per topic filter).
CREATE TABLE IF NOT EXISTS mqtt_sub (
    clientid TEXT NOT NULL,
    topic    TEXT NOT NULL,
    qos      INTEGER NOT NULL,
    PRIMARY KEY (clientid, topic)
);

-- Every message. The key is the broker's message id with the arrival time (message ids
-- start again when the broker restarts): the same for a retried batch, which ON CONFLICT
-- DO NOTHING then skips, and different for any two messages.
CREATE TABLE IF NOT EXISTS mqtt_msg (
    id      TEXT NOT NULL,
    sender  TEXT,
    topic   TEXT NOT NULL,
    qos     INTEGER NOT NULL,
    retain  BOOLEAN NOT NULL,
    payload TEXT,
    arrived TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (id, arrived)
);

-- The retained message of each topic (an empty retained payload deletes it).
CREATE TABLE IF NOT EXISTS mqtt_retain (
    topic   TEXT PRIMARY KEY,
    id      TEXT NOT NULL,
    sender  TEXT,
    qos     INTEGER NOT NULL,
    payload TEXT,
    arrived TIMESTAMPTZ NOT NULL
);
