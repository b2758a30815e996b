//! Randomness from the operating system's CSPRNG (via aws-lc): bytes, opaque tokens, ids.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    aws_lc_rs::rand::fill(buf).expect("the system random number generator failed");
}

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    fill_random(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A new random identifier (122 random bits, UUID v4 text form): user, refresh-token and
/// family ids, and request ids.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_32_bytes_base64url() {
        let t = random_token(32);
        assert_eq!(t.len(), 43);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(t, random_token(32));
    }

    #[test]
    fn ids_look_like_uuids() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_id());
    }
}
