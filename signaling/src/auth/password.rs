//! argon2id hashing and verification on the CPU pool.

use crate::cpu::CpuPool;
use crate::error::ApiError;
use argon2::password_hash::{
    Decimal, Ident, Output, ParamsString, PasswordHash, PasswordHasher, PasswordVerifier, Salt,
    SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;
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
                PooledArgon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
                    && real
            })
            .await
    }
}

fn hash_now(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    PooledArgon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("argon2: {e}")))
}

thread_local! {
    /// argon2's working memory (19 MiB with the defaults), one per CPU pool
    /// thread, reused by every hash on that thread.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2 that hashes in [`MEMORY`] instead of allocating its 19 MiB per
/// hash: the allocator keeps freed blocks in per-thread arenas, so a burst
/// of sign-ups left the process holding hundreds of MiB it never used
/// again. With reuse it is one block per CPU pool thread, for good.
#[derive(Default)]
struct PooledArgon2 {
    algorithm: Algorithm,
    version: Version,
    params: Params,
}

impl PasswordHasher for PooledArgon2 {
    type Params = Params;

    fn hash_password<'a>(
        &self,
        password: &[u8],
        salt: impl Into<Salt<'a>>,
    ) -> argon2::password_hash::Result<PasswordHash<'a>> {
        let salt = salt.into();
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
        let output_len = self
            .params
            .output_len()
            .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let argon2 = Argon2::new(self.algorithm, self.version, self.params.clone());
        let output = Output::init_with(output_len, |out| {
            MEMORY.with_borrow_mut(|blocks| {
                let needed = self.params.block_count();
                if blocks.len() < needed {
                    blocks.resize(needed, Block::default());
                }
                argon2
                    .hash_password_into_with_memory(
                        password,
                        salt_bytes,
                        out,
                        &mut blocks[..needed],
                    )
                    .map_err(Into::into)
            })
        })?;
        Ok(PasswordHash {
            algorithm: self.algorithm.ident(),
            version: Some(self.version.into()),
            params: ParamsString::try_from(&self.params)?,
            salt: Some(salt),
            hash: Some(output),
        })
    }

    fn hash_password_customized<'a>(
        &self,
        password: &[u8],
        algorithm: Option<Ident<'a>>,
        version: Option<Decimal>,
        params: Params,
        salt: impl Into<Salt<'a>>,
    ) -> argon2::password_hash::Result<PasswordHash<'a>> {
        let hasher = Self {
            algorithm: algorithm
                .map(Algorithm::try_from)
                .transpose()?
                .unwrap_or_default(),
            version: version
                .map(Version::try_from)
                .transpose()?
                .unwrap_or_default(),
            params,
        };
        hasher.hash_password(password, salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_hashes_verify_with_plain_argon2_and_back() {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let ours = PooledArgon2::default()
            .hash_password(b"correct horse", &salt)
            .expect("hash")
            .to_string();
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .expect("hash")
            .to_string();
        assert_eq!(ours, theirs, "the same PHC string as the argon2 crate");
        let parsed = PasswordHash::new(&theirs).expect("parse");
        assert!(
            PooledArgon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            PooledArgon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
    }
}
