-- The viewer's accounts (viewer/accounts.py): people log in with a role, and what they change
-- is recorded. Sessions are kept here, not in a cookie, so logging out, disabling a user or
-- changing a role ends their sessions at once.
CREATE TABLE IF NOT EXISTS viewer_users (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    password_hash text NOT NULL,  -- argon2id, PHC string
    role text NOT NULL CHECK (role IN ('viewer', 'labeller', 'admin')),
    disabled_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The cookie holds a random token; only its SHA-256 is stored, so a read of this table
-- (a backup, a replica) opens no session.
CREATE TABLE IF NOT EXISTS viewer_sessions (
    token_hash bytea PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES viewer_users ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS viewer_sessions_user_idx ON viewer_sessions (user_id);
-- Who did what, when: user management now, training and promotion from the browser later.
CREATE TABLE IF NOT EXISTS admin_actions (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    target text,
    detail jsonb NOT NULL DEFAULT '{}'
);
-- The key that signs the viewer's CSRF tokens, made by the first viewer that starts: every
-- replica shares it, and it survives restarts (an open page's token stays valid).
CREATE TABLE IF NOT EXISTS viewer_secret (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    secret bytea NOT NULL
);
-- vs_viewer stays read-only on the pipeline's tables; these are the only ones it writes.
GRANT SELECT, INSERT, UPDATE ON viewer_users TO vs_viewer;
GRANT SELECT, INSERT, UPDATE, DELETE ON viewer_sessions TO vs_viewer;
GRANT SELECT, INSERT ON admin_actions, viewer_secret TO vs_viewer;
GRANT USAGE ON SEQUENCE viewer_users_id_seq, admin_actions_id_seq TO vs_viewer;
