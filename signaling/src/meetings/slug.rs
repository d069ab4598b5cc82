//! Meeting slugs: human-readable, GitHub-style names that cannot be guessed.
//!
//! A slug is `adjective-animal-place-NNNNN`: three words from lists of 256
//! and a five-digit number, 24 + 16.6 = 40.6 bits drawn from the operating
//! system's CSPRNG, so a link is as hard to guess as a 40-bit key.

use super::words::{ADJECTIVES, ANIMALS, PLACES};
use rand::Rng;

/// Count of values the numeric suffix takes.
const SUFFIX_VALUES: u32 = 100_000;

/// Draws a fresh random slug.
pub fn generate() -> String {
    let mut rng = rand::rng();
    format!(
        "{}-{}-{}-{:05}",
        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
        ANIMALS[rng.random_range(0..ANIMALS.len())],
        PLACES[rng.random_range(0..PLACES.len())],
        rng.random_range(0..SUFFIX_VALUES)
    )
}

/// Whether `s` has the shape of a slug (cheap check before a database query).
pub fn looks_valid(s: &str) -> bool {
    (8..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Bits of randomness in a slug.
pub fn entropy_bits() -> f64 {
    (ADJECTIVES.len() as f64).log2()
        + (ANIMALS.len() as f64).log2()
        + (PLACES.len() as f64).log2()
        + f64::from(SUFFIX_VALUES).log2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn carries_at_least_40_bits() {
        assert!(entropy_bits() >= 40.0, "{} bits", entropy_bits());
    }

    #[test]
    fn words_are_distinct_so_every_draw_counts() {
        let all: Vec<&str> = ADJECTIVES
            .iter()
            .chain(&ANIMALS)
            .chain(&PLACES)
            .copied()
            .collect();
        let unique: HashSet<&str> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len());
    }

    #[test]
    fn generated_slugs_look_valid_and_differ() {
        let slugs: HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(slugs.len(), 1000);
        for slug in &slugs {
            assert!(looks_valid(slug), "{slug}");
            assert_eq!(slug.split('-').count(), 4, "{slug}");
        }
        assert!(!looks_valid("../etc/passwd"));
        assert!(!looks_valid("UPPER-case-slug-12345"));
    }
}
