//! argon2id hashing and verification on the CPU pool.

use crate::cpu::CpuPool;
use crate::error::ApiError;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::{Arc, OnceLock};

/// Hashes and verifies passwords with argon2id (the crate's defaults:
/// 19 MiB, 2 passes, 1 lane, as OWASP recommends).
#[derive(Clone, Debug)]
pub struct Passwords {
    cpu: CpuPool,
    /// A hash of a random password, verified against when the username does
    /// not exist, so unknown users take as long as wrong passwords.
    decoy: Arc<OnceLock<String>>,
}

impl Passwords {
    /// Uses `cpu` for the hashing work.
    pub fn new(cpu: CpuPool) -> Self {
        Self {
            cpu,
            decoy: Arc::new(OnceLock::new()),
        }
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.cpu.run(move || hash_now(&password)).await?
    }

    /// Checks `password` against `hash`; with no hash (unknown user) it does
    /// the same work against a decoy and returns false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        let decoy = self.decoy.clone();
        self.cpu
            .run(move || {
                let (hash, real) = match hash {
                    Some(hash) => (hash, true),
                    None => {
                        let decoy = decoy.get_or_init(|| {
                            let random: [u8; 16] = rand::random();
                            hash_now(&format!("{random:?}")).unwrap_or_default()
                        });
                        (decoy.clone(), false)
                    }
                };
                let Ok(parsed) = PasswordHash::new(&hash) else {
                    return false;
                };
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
                    && real
            })
            .await
    }
}

fn hash_now(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("argon2: {e}")))
}
