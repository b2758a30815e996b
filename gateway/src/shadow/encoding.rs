//! An answer's body as it was meant, before its `Content-Encoding`: each side of a comparison
//! may compress, with its own library, level or size threshold (Django's `GZipMiddleware`
//! against a service that never compresses), so bodies are compared decoded.
//!
//! `gzip` (and `x-gzip`), `deflate` (zlib, as HTTP means it), `br` and `zstd` are decoded, in
//! the order listed when there are several (`Content-Encoding: gzip, br` was gzipped, then
//! brotli'd: undone from the last; at most [`MAX_CODINGS`]). An empty body (a HEAD, a 304) is
//! empty whatever its encoding says. Decoding stops past `limit` bytes: a small body that
//! expands past the shadow's `max_response` is too large, not a reason to allocate. The
//! decoders are the ones pingora's own compression module builds (`flate2`, `brotli`, `zstd`).
//!
//! What a decoder holds besides its output: zstd's window is capped just above `limit` (a frame
//! that asks for more is refused); brotli's ring buffer is what the stream declares, up to
//! 16 MiB, while it decodes (the shadow's copies decode under their in-flight permit, on
//! tokio's blocking pool, so at most `max_in_flight` of them at once).

use std::io::Read;

use http::HeaderMap;
use http::header::CONTENT_ENCODING;

/// The most codings undone for one body (`gzip, br` is two); more is refused.
pub const MAX_CODINGS: usize = 3;

/// Why a body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Decoded, it is larger than the limit.
    TooLarge,
    /// An encoding this module does not know, or bytes that are not what it says.
    Undecodable,
}

/// The decoded body (borrowed back when there is no encoding to undo).
pub fn decode<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
    limit: usize,
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    let mut codings: Vec<String> = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| DecodeError::Undecodable)?;
        for c in text.split(',') {
            let c = c.trim().to_ascii_lowercase();
            if !c.is_empty() && c != "identity" {
                codings.push(c);
            }
        }
    }
    if codings.is_empty() || body.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    if codings.len() > MAX_CODINGS {
        return Err(DecodeError::Undecodable);
    }
    let mut bytes = body.to_vec();
    for coding in codings.iter().rev() {
        bytes = undo(coding, &bytes, limit)?;
    }
    Ok(std::borrow::Cow::Owned(bytes))
}

fn undo(coding: &str, input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let reader: Box<dyn Read + '_> = match coding {
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(input)),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(input)),
        "br" => Box::new(brotli::Decompressor::new(input, 4096)),
        "zstd" => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|_| DecodeError::Undecodable)?;
            // The window (zstd's back-reference memory) no larger than the output may be:
            // 2^10 (its minimum) up to 2^31.
            let log = usize::BITS - limit.max(1024).leading_zeros();
            d.window_log_max(log.min(31))
                .map_err(|_| DecodeError::Undecodable)?;
            Box::new(d)
        }
        _ => return Err(DecodeError::Undecodable),
    };
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::Undecodable)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_ENCODING, encoding.parse().unwrap());
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn every_known_encoding_is_undone_and_identity_is_borrowed() {
        let text = br#"{"amount":"12.50","items":[1,2,3]}"#;
        assert!(matches!(
            decode(&HeaderMap::new(), text, 100),
            Ok(std::borrow::Cow::Borrowed(_))
        ));
        assert_eq!(&*decode(&headers("gzip"), &gzip(text), 100).unwrap(), text);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(text).unwrap();
        assert_eq!(
            &*decode(&headers("deflate"), &z.finish().unwrap(), 100).unwrap(),
            text
        );
        let mut br = Vec::new();
        brotli::BrotliCompress(&mut &text[..], &mut br, &Default::default()).unwrap();
        assert_eq!(&*decode(&headers("br"), &br, 100).unwrap(), text);
        let zs = zstd::encode_all(&text[..], 3).unwrap();
        assert_eq!(&*decode(&headers("zstd"), &zs, 100).unwrap(), text);
        // Applied gzip first, then brotli: undone from the last.
        let mut both = Vec::new();
        brotli::BrotliCompress(&mut &gzip(text)[..], &mut both, &Default::default()).unwrap();
        assert_eq!(&*decode(&headers("gzip, br"), &both, 100).unwrap(), text);
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_refused() {
        let zeros = gzip(&vec![0u8; 10_000_000]);
        assert!(zeros.len() < 20_000);
        assert_eq!(
            decode(&headers("gzip"), &zeros, 1000),
            Err(DecodeError::TooLarge)
        );
        assert_eq!(
            decode(&headers("gzip"), b"not gzip", 1000),
            Err(DecodeError::Undecodable)
        );
        assert_eq!(
            decode(&headers("compress"), b"x", 1000),
            Err(DecodeError::Undecodable)
        );
        assert_eq!(
            decode(&headers("gzip, gzip, gzip, gzip"), &gzip(b"x"), 1000),
            Err(DecodeError::Undecodable),
            "more codings than MAX_CODINGS"
        );
        // A zstd frame whose window is larger than the limit allows is refused, not decoded.
        let big = vec![7u8; 4 << 20];
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.window_log(22).unwrap();
        e.include_contentsize(false).unwrap();
        e.write_all(&big).unwrap();
        let framed = e.finish().unwrap();
        assert_eq!(
            decode(&headers("zstd"), &framed, 64 * 1024),
            Err(DecodeError::Undecodable),
            "refused for its window, before decoding past the limit (which would be TooLarge)"
        );
    }

    #[test]
    fn an_empty_body_is_empty_whatever_its_encoding() {
        for coding in ["gzip", "deflate", "br", "zstd", "gzip, br"] {
            assert_eq!(
                &*decode(&headers(coding), b"", 10).unwrap(),
                b"",
                "{coding}"
            );
        }
    }
}
