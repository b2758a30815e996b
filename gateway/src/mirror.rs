//! Shadow traffic at run time (`docs/shadow.md`): which requests a route's shadow copies, and
//! the copies themselves, sent beside the request through a client of their own and judged by
//! [`crate::shadow`]'s comparison and verdicts. The proxy only feeds a copy what passes through
//! it anyway.
//!
//! | module | owns |
//! |---|---|
//! | [`plan`] | which requests are copied (methods, upgrades, the candidate's own side, sample, body size), the skip reasons, bytes kept up to a cap |
//! | [`copy`] | a route's shadow at run time (verdicts, in-flight permits, its own client and breakers) and one copy's life: tee, send, capture, compare in a task of its own |

pub mod copy;
pub mod plan;
