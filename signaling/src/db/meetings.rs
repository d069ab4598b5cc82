//! Meetings and who took part in them.

use super::{Database, is_unique_violation, now_ms};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A meeting: a room with a human-readable link.
#[derive(Debug, Clone)]
pub struct Meeting {
    /// Internal id.
    pub id: i64,
    /// The unguessable human-readable name in the link.
    pub slug: String,
    /// Title given at creation (may be empty).
    pub title: String,
    /// The creator's user id.
    pub created_by: i64,
    /// The creator's display name.
    pub created_by_name: String,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
}

const MEETING_SELECT: &str = "SELECT m.id, m.slug, m.title, m.created_by, \
     u.display_name AS created_by_name, m.created_at \
     FROM meetings m JOIN users u ON u.id = m.created_by";

fn meeting_from_row(row: &AnyRow) -> sqlx::Result<Meeting> {
    Ok(Meeting {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        title: row.try_get("title")?,
        created_by: row.try_get("created_by")?,
        created_by_name: row.try_get("created_by_name")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Database {
    /// Creates a meeting; `Ok(None)` if the slug is already taken (the caller
    /// draws another).
    pub async fn create_meeting(
        &self,
        slug: &str,
        title: &str,
        created_by: i64,
    ) -> sqlx::Result<Option<Meeting>> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO meetings (slug, title, created_by, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        )
        .bind(slug)
        .bind(title)
        .bind(created_by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(row) => row.try_get("id")?,
            Err(e) if is_unique_violation(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        sqlx::query(
            "INSERT INTO meeting_members (meeting_id, user_id, last_seen_at) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(created_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.meeting_by_slug(slug).await
    }

    /// Looks a meeting up by its slug.
    pub async fn meeting_by_slug(&self, slug: &str) -> sqlx::Result<Option<Meeting>> {
        let sql = format!("{MEETING_SELECT} WHERE m.slug = $1");
        let row = sqlx::query(&sql)
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(meeting_from_row).transpose()
    }

    /// Records that `user_id` joined the meeting now.
    pub async fn record_join(&self, meeting_id: i64, user_id: i64) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO meeting_members (meeting_id, user_id, last_seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (meeting_id, user_id) DO UPDATE SET last_seen_at = excluded.last_seen_at",
        )
        .bind(meeting_id)
        .bind(user_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether a host made `user_id` a co-host of the meeting.
    pub async fn is_cohost(&self, meeting_id: i64, user_id: i64) -> sqlx::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM meeting_hosts WHERE meeting_id = $1 AND user_id = $2")
            .bind(meeting_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Makes `user_id` a co-host of the meeting (again: no change).
    pub async fn add_cohost(
        &self,
        meeting_id: i64,
        user_id: i64,
        granted_by: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO meeting_hosts (meeting_id, user_id, granted_by, granted_at)              VALUES ($1, $2, $3, $4) ON CONFLICT (meeting_id, user_id) DO NOTHING",
        )
        .bind(meeting_id)
        .bind(user_id)
        .bind(granted_by)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Meetings the user created or joined, most recently used first.
    pub async fn meetings_of(&self, user_id: i64, limit: i64) -> sqlx::Result<Vec<Meeting>> {
        let sql = format!(
            "{MEETING_SELECT} JOIN meeting_members mm ON mm.meeting_id = m.id \
             WHERE mm.user_id = $1 ORDER BY mm.last_seen_at DESC, m.id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(meeting_from_row).collect()
    }
}
