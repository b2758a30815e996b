//! `X-Request-ID`: a well-formed incoming id is kept, otherwise one is generated.
//!
//! Well-formed: 1 to 128 characters from `A-Z a-z 0-9 - _ . : +` (enough for UUIDs, ULIDs
//! and the ids other proxies generate; nothing that could break a log line or a header).

pub const HEADER: &str = "x-request-id";
pub const MAX_LEN: usize = 128;

/// The incoming value, if it is safe to keep.
pub fn accept(incoming: &[u8]) -> Option<&str> {
    let ok = !incoming.is_empty()
        && incoming.len() <= MAX_LEN
        && incoming
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+'));
    if ok {
        std::str::from_utf8(incoming).ok()
    } else {
        None
    }
}

/// A new id: 32 lower-case hex characters (128 random bits).
pub fn generate() -> String {
    crate::hex::lower(&rand::random::<u128>().to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_good_ids_and_refuses_the_rest() {
        assert_eq!(accept(b"abc-123_x.y:z+1"), Some("abc-123_x.y:z+1"));
        assert_eq!(accept(b""), None);
        assert_eq!(accept(b"a b"), None);
        assert_eq!(accept(b"a\r\nx-evil: 1"), None);
        assert_eq!(accept(&[b'a'; 129]), None);
        assert_eq!(generate().len(), 32);
        assert_ne!(generate(), generate());
    }
}
