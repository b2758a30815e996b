//! An answer's body as it was meant, before its `Content-Encoding`: each side of a comparison
//! may compress, with its own library, level or size threshold (Django's `GZipMiddleware`
//! against a service that never compresses), so bodies are compared decoded.
//!
//! `gzip` (and `x-gzip`), `deflate` (zlib, as HTTP means it), `br` and `zstd` are decoded, in
//! the order listed when there are several (`Content-Encoding: gzip, br` was gzipped, then
//! brotli'd: undone from the last). Decoding stops past `limit` bytes: a small body that
//! expands past the shadow's `max_response` is too large, not a reason to allocate. The
//! decoders are the ones pingora's own compression module builds (`flate2`, `brotli`, `zstd`).

use std::io::Read;

use http::HeaderMap;
use http::header::CONTENT_ENCODING;

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
    if codings.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(body));
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
        "zstd" => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|_| DecodeError::Undecodable)?,
        ),
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
    }
}
