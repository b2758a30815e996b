//! Waiting for a condition with a deadline instead of sleeping.
//!
//! [`eventually`] is the one way these tests wait. A test that needs "the request is in flight"
//! or "the breaker is open" asks the system (a metric, an admin endpoint, a log line) until it
//! says so, rather than sleeping for a time that is too long on a fast machine and too short
//! on a busy one. When the condition never comes, the failure says what was awaited and what
//! was seen last.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long [`eventually`] waits between two checks.
pub const POLL: Duration = Duration::from_millis(25);

/// What a check of [`eventually`] returns: done (with a value), or not yet.
///
/// | check returns | done | not yet |
/// |---|---|---|
/// | `bool` | `true` (value `()`) | `false` |
/// | `Option<T>` | `Some(value)` | `None` |
/// | `Result<T, E: Debug>` | `Ok(value)` | `Err(observed)`: the timeout message shows it |
pub trait Outcome {
    type Value;

    /// `Ok(value)` when done; `Err(what was observed, if the check says)` when not yet.
    fn into_result(self) -> Result<Self::Value, Option<String>>;
}

impl Outcome for bool {
    type Value = ();

    fn into_result(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;

    fn into_result(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Outcome for Result<T, E> {
    type Value = T;

    fn into_result(self) -> Result<T, Option<String>> {
        self.map_err(|observed| Some(format!("{observed:?}")))
    }
}

/// Runs `check` until it is done (see [`Outcome`]) and returns its value.
///
/// The first check runs at once, then one every [`POLL`], the last one at the deadline. Time is
/// tokio's, so a test with paused time waits without sleeping. Return `Err(observed)` rather
/// than `None` when there is something worth seeing in a failure: a metric's current value, a
/// status code.
///
/// # Panics
///
/// When `timeout` passes first, with
/// `timed out after {timeout:?} waiting for {what} ({n} checks); last observed: {observed}`,
/// where `observed` is the last `Err` a check returned. The wait is bounded even when a check
/// never finishes (a request to a frozen server): that check is cut off at the deadline.
pub async fn eventually<F, Fut, O>(what: &str, timeout: Duration, mut check: F) -> O::Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
    O: Outcome,
{
    let deadline = Instant::now() + timeout;
    let mut last = None;
    let mut checks = 0u32;
    loop {
        checks += 1;
        let Ok(outcome) = tokio::time::timeout_at(deadline, check()).await else {
            timed_out(what, timeout, checks, true, last);
        };
        match outcome.into_result() {
            Ok(value) => return value,
            Err(observed) => last = observed,
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out(what, timeout, checks, false, last);
        }
        // The poll interval: the one sleep behind every wait, never past the deadline.
        tokio::time::sleep_until((now + POLL).min(deadline)).await;
    }
}

fn timed_out(
    what: &str,
    timeout: Duration,
    checks: u32,
    still_running: bool,
    last: Option<String>,
) -> ! {
    let plural = if checks == 1 { "" } else { "s" };
    let note = if still_running {
        ", the last still running"
    } else {
        ""
    };
    let last = last.unwrap_or_else(|| "nothing (the check returned None or false)".into());
    panic!(
        "timed out after {timeout:?} waiting for {what} ({checks} check{plural}{note}); last observed: {last}"
    )
}

/// Waits until `GET url` answers 2xx; a timeout names the last status or error.
pub async fn wait_http_ok(url: &str, timeout: Duration) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    eventually(&format!("GET {url} to answer 2xx"), timeout, || {
        let client = client.clone();
        async move {
            match client.get(url).send().await {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => Err(format!("status {}", resp.status())),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of the panic `fut` ends with, and when (paused time) it panicked.
    async fn panic_of<T: Send + 'static>(
        fut: impl Future<Output = T> + Send + 'static,
    ) -> (String, Duration) {
        let start = Instant::now();
        let err = match tokio::spawn(fut).await {
            Ok(_) => panic!("the wait returned instead of timing out"),
            Err(err) => err,
        };
        let msg = match err.into_panic().downcast::<String>() {
            Ok(s) => *s,
            Err(payload) => payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .expect("a text panic"),
        };
        (msg, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_is_done_at_once_does_not_wait() {
        let start = Instant::now();
        eventually("true", Duration::from_secs(1), || async { true }).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn returns_the_value_of_the_first_check_that_is_done() {
        let start = Instant::now();
        let mut n = 0;
        let value = eventually("the third check", Duration::from_secs(1), || {
            n += 1;
            let k = n;
            async move { (k == 3).then_some(k * 10) }
        })
        .await;
        assert_eq!(value, 30);
        assert_eq!(
            start.elapsed(),
            2 * POLL,
            "one poll interval between checks"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_ok_ends_the_wait_and_an_err_is_what_was_observed() {
        let mut n = 0;
        let value = eventually("n to reach 2", Duration::from_secs(1), || {
            n += 1;
            let k = n;
            async move { if k >= 2 { Ok(k) } else { Err(k) } }
        })
        .await;
        assert_eq!(value, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_names_what_was_awaited_and_the_last_observation() {
        let timed_out = panic_of(async {
            let mut n = 0;
            eventually("the answer", Duration::from_secs(1), || {
                n += 1;
                let k = n;
                async move { if k > 1000 { Ok(()) } else { Err(k) } }
            })
            .await
        })
        .await;
        // Checks at 0, 25, ..., 1000ms: the last one at the deadline.
        let msg = "timed out after 1s waiting for the answer (41 checks); last observed: 41";
        assert_eq!(timed_out, (msg.to_string(), Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_false_check_times_out_saying_it_observed_nothing() {
        let (msg, _) = panic_of(async {
            eventually("never", Duration::from_millis(50), || async { false }).await
        })
        .await;
        assert_eq!(
            msg,
            "timed out after 50ms waiting for never (3 checks); last observed: nothing (the check returned None or false)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_never_finishes_is_cut_off_at_the_deadline() {
        let pending = std::future::pending::<bool>;
        let timed_out = panic_of(eventually("a reply", Duration::from_secs(1), pending)).await;
        let msg = "timed out after 1s waiting for a reply (1 check, the last still running); last observed: nothing (the check returned None or false)";
        assert_eq!(timed_out, (msg.to_string(), Duration::from_secs(1)));
    }
}
