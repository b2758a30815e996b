//! Lowercase hex for ids on the request path (trace ids, `traceparent`, request ids, rate-limit
//! bucket keys). Written out rather than `format!("{:02x}")` per byte or `{:032x}`: these run
//! on every request, and the formatting machinery cost ~10× this (callgrind, bench/README.md).

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` to `out` in lowercase hex.
pub fn push(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// `bytes` in lowercase hex.
pub fn lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push(&mut out, bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_formatting() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff, 0x10];
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(lower(&bytes), expected);
        let n = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c_u128;
        assert_eq!(lower(&n.to_be_bytes()), format!("{n:032x}"));
        assert_eq!(lower(&[]), "");
    }
}
