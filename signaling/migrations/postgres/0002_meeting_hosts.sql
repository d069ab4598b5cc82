-- Co-hosts: people a host made hosts of one meeting (its creator is one
-- without a row here). Kept across restarts and later sessions.
CREATE TABLE meeting_hosts (
    meeting_id BIGINT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    granted_by BIGINT NOT NULL REFERENCES users(id),
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (meeting_id, user_id)
);
