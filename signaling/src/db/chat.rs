//! Chat messages of a meeting.

use super::{Database, now_ms};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A stored chat message with its author.
#[derive(Debug, Clone)]
pub struct ChatMessage {
    /// Increasing id (also the paging cursor).
    pub id: i64,
    /// Author's user id.
    pub user_id: i64,
    /// Author's display name.
    pub display_name: String,
    /// Author's avatar version (for the avatar URL).
    pub avatar_version: i64,
    /// The text, exactly as sent.
    pub text: String,
    /// Time stored, ms since the epoch.
    pub sent_at: i64,
    /// A line the meeting recorded (a host action), not a message
    /// someone wrote.
    pub system: bool,
}

/// Id and time of a just-stored message.
#[derive(Debug, Clone, Copy)]
pub struct StoredChat {
    /// The new message's id.
    pub id: i64,
    /// Time stored, ms since the epoch.
    pub sent_at: i64,
}

/// One page of history, newest first.
#[derive(Debug, Clone)]
pub struct ChatPage {
    /// The messages, newest first.
    pub messages: Vec<ChatMessage>,
    /// Whether older messages exist beyond this page.
    pub has_more: bool,
}

fn message_from_row(row: &AnyRow) -> sqlx::Result<ChatMessage> {
    Ok(ChatMessage {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        display_name: row.try_get("display_name")?,
        avatar_version: row.try_get("avatar_version")?,
        text: row.try_get("text")?,
        sent_at: row.try_get("sent_at")?,
        system: row.try_get::<String, _>("kind")? == "system",
    })
}

impl Database {
    /// Stores a message; returns its id and time. The caller already knows
    /// the author, so nothing more is read back.
    pub async fn insert_chat(
        &self,
        meeting_id: i64,
        user_id: i64,
        text: &str,
    ) -> sqlx::Result<StoredChat> {
        self.insert_line(meeting_id, user_id, text, "chat").await
    }

    /// Stores a line the meeting records about a host action by
    /// `user_id` (shown apart from what people write).
    pub async fn insert_system_line(
        &self,
        meeting_id: i64,
        user_id: i64,
        text: &str,
    ) -> sqlx::Result<StoredChat> {
        self.insert_line(meeting_id, user_id, text, "system").await
    }

    async fn insert_line(
        &self,
        meeting_id: i64,
        user_id: i64,
        text: &str,
        kind: &str,
    ) -> sqlx::Result<StoredChat> {
        let row = sqlx::query(
            "INSERT INTO chat_messages (meeting_id, user_id, text, sent_at, kind) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id, sent_at",
        )
        .bind(meeting_id)
        .bind(user_id)
        .bind(text)
        .bind(now_ms())
        .bind(kind)
        .fetch_one(&self.pool)
        .await?;
        Ok(StoredChat {
            id: row.try_get("id")?,
            sent_at: row.try_get("sent_at")?,
        })
    }

    /// Messages older than `before` (or the newest, if `None`), newest first.
    pub async fn chat_page(
        &self,
        meeting_id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> sqlx::Result<ChatPage> {
        let rows = sqlx::query(
            "SELECT c.id, c.user_id, u.display_name, u.avatar_version, c.text, c.sent_at, c.kind \
             FROM chat_messages c JOIN users u ON u.id = c.user_id \
             WHERE c.meeting_id = $1 AND c.id < $2 ORDER BY c.id DESC LIMIT $3",
        )
        .bind(meeting_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<sqlx::Result<Vec<_>>>()?;
        let has_more = messages.len() as i64 > limit;
        messages.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(ChatPage { messages, has_more })
    }
}
