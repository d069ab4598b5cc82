//! Accounts and their avatars.

use super::{Database, is_unique_violation, now_ms};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A registered account.
#[derive(Clone)]
pub struct User {
    /// Stable numeric id.
    pub id: i64,
    /// The login name as the user typed it (unique case-insensitively).
    pub username: String,
    /// The name others see.
    pub display_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Incremented on every avatar upload; 0 means no avatar yet.
    pub avatar_version: i64,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .field("password_hash", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl User {
    /// The URL of this user's avatar; the version busts browser caches.
    pub fn avatar_url(&self) -> String {
        format!("/api/users/{}/avatar?v={}", self.id, self.avatar_version)
    }
}

/// Fields of a new account (already validated and hashed).
pub struct NewUser<'a> {
    /// Login name.
    pub username: &'a str,
    /// Shown name.
    pub display_name: &'a str,
    /// argon2id PHC string.
    pub password_hash: &'a str,
}

/// A stored avatar image.
pub struct Avatar {
    /// MIME type of `data`.
    pub content_type: String,
    /// The encoded image.
    pub data: Vec<u8>,
    /// Strong validator for caching.
    pub etag: String,
}

const USER_COLUMNS: &str = "id, username, display_name, password_hash, avatar_version, created_at";

fn user_from_row(row: &AnyRow) -> sqlx::Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        password_hash: row.try_get("password_hash")?,
        avatar_version: row.try_get("avatar_version")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Database {
    /// Creates an account; `Ok(None)` when the username is taken.
    pub async fn create_user(&self, new: NewUser<'_>) -> sqlx::Result<Option<User>> {
        let sql = format!(
            "INSERT INTO users (username, username_key, display_name, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
        );
        let result = sqlx::query(&sql)
            .bind(new.username)
            .bind(new.username.to_lowercase())
            .bind(new.display_name)
            .bind(new.password_hash)
            .bind(now_ms())
            .fetch_one(&self.pool)
            .await;
        match result {
            Ok(row) => user_from_row(&row).map(Some),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks an account up by login name, case-insensitively.
    pub async fn user_by_username(&self, username: &str) -> sqlx::Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username_key = $1");
        let row = sqlx::query(&sql)
            .bind(username.to_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Looks an account up by id.
    pub async fn user_by_id(&self, id: i64) -> sqlx::Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Changes a user's display name.
    pub async fn set_display_name(&self, user_id: i64, display_name: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
            .bind(display_name)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores (or replaces) a user's avatar and bumps their avatar version.
    pub async fn set_avatar(&self, user_id: i64, avatar: &Avatar) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO avatars (user_id, content_type, data, etag, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET content_type = excluded.content_type, \
             data = excluded.data, etag = excluded.etag, updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(&avatar.content_type)
        .bind(&avatar.data)
        .bind(&avatar.etag)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE users SET avatar_version = avatar_version + 1 WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// A user's uploaded avatar, if any.
    pub async fn avatar(&self, user_id: i64) -> sqlx::Result<Option<Avatar>> {
        let row = sqlx::query("SELECT content_type, data, etag FROM avatars WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(Avatar {
                content_type: row.try_get("content_type")?,
                data: row.try_get("data")?,
                etag: row.try_get("etag")?,
            })
        })
        .transpose()
    }
}
