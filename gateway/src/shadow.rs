//! Shadow traffic with verdicts (`docs/shadow.md`), its plain-data parts: a route's copy of a
//! request goes to a candidate upstream, and its answer is compared with the primary's. These
//! modules compare and count; [`crate::mirror`] sends the copies and feeds them.
//!
//! | module | owns |
//! |---|---|
//! | [`encoding`] | an answer's body before its `Content-Encoding` (gzip, deflate, br, zstd), bounded |
//! | [`pointer`](mod@pointer) | JSON Pointers and the `*` patterns of `ignore`, `unordered`, `redact` |
//! | [`compare`] | a route's `compare:` settings and where two answers differ: status, headers, JSON pointers (ignore, unordered, decimal numbers), bounded |
//! | [`verdicts`] | a comparison's verdict (noise learned from primary-vs-primary), per-route counts, parity with its Wilson bound, top differing pointers, the redacted mismatch ring, the admin views |

pub mod compare;
pub mod encoding;
pub mod pointer;
pub mod verdicts;
