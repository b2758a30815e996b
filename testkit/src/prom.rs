//! One value out of a Prometheus text exposition (what a `/metrics` endpoint answers), for
//! tests that wait on a gauge or a counter.

/// The value of `series` in `text`, or `None` when the series is not there.
///
/// `series` is written as in the exposition: a bare name (`gateway_requests_in_flight`) or a
/// name with its whole label set (`gateway_config_reloads_total{result="failure"}`). Labels
/// match as a set, in any order; a series with more or other labels is another series.
/// Comment lines and a sample's timestamp are ignored.
///
/// # Panics
///
/// When `series` itself is not a series (a test's typo).
pub fn value(text: &str, series: &str) -> Option<f64> {
    let wanted = match parse_series(series) {
        Some((s, rest)) if rest.trim().is_empty() => s,
        _ => panic!("not a Prometheus series: {series:?}"),
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let (s, rest) = parse_series(line)?;
            if s != wanted {
                return None;
            }
            rest.split_whitespace().next()?.parse().ok()
        })
}

/// A metric name and its labels, sorted.
#[derive(Debug, PartialEq)]
struct Series {
    name: String,
    labels: Vec<(String, String)>,
}

/// `name` or `name{k="v",...}` at the start of `s`, and what follows it.
fn parse_series(s: &str) -> Option<(Series, &str)> {
    let s = s.trim_start();
    let name_end = s
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(s.len());
    let name = &s[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &s[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once('=')?;
            let (value, after) = quoted(after.trim_start())?;
            labels.push((key.trim().to_string(), value));
            let after = after.trim_start();
            rest = after.strip_prefix(',').unwrap_or(after);
        }
    }
    labels.sort();
    let series = Series {
        name: name.to_string(),
        labels,
    };
    Some((series, rest))
}

/// A `"…"` label value with the exposition's escapes (`\\`, `\"`, `\n`), and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::value;

    const TEXT: &str = r#"# HELP gateway_requests_in_flight Requests being handled now.
# TYPE gateway_requests_in_flight gauge
gateway_requests_in_flight 2
gateway_requests_in_flight_peak 9
gateway_config_reloads_total{result="failure"} 1
gateway_config_reloads_total{result="success"} 3
gateway_circuit_breaker_state{target="127.0.0.1:8080",upstream="payments"} 2
gateway_odd{path="/a \"b\" }c\\d",route="x"} 4 1700000000000
gateway_request_duration_seconds_bucket{route="r",le="+Inf"} 7
gateway_jwks_last_success_timestamp_seconds 1764754000.125
"#;

    #[test]
    fn a_bare_name_is_read_and_a_longer_name_is_another_series() {
        assert_eq!(value(TEXT, "gateway_requests_in_flight"), Some(2.0));
        assert_eq!(value(TEXT, "gateway_requests_in_flight_peak"), Some(9.0));
        assert_eq!(
            value(TEXT, "gateway_jwks_last_success_timestamp_seconds"),
            Some(1_764_754_000.125)
        );
    }

    #[test]
    fn labels_match_as_a_set_in_any_order() {
        let s = r#"gateway_circuit_breaker_state{upstream="payments",target="127.0.0.1:8080"}"#;
        assert_eq!(value(TEXT, s), Some(2.0));
        assert_eq!(
            value(TEXT, r#"gateway_config_reloads_total{result="success"}"#),
            Some(3.0)
        );
    }

    #[test]
    fn a_missing_or_different_label_set_is_absent() {
        assert_eq!(
            value(
                TEXT,
                r#"gateway_circuit_breaker_state{upstream="payments"}"#
            ),
            None
        );
        assert_eq!(value(TEXT, "gateway_config_reloads_total"), None);
        assert_eq!(
            value(TEXT, r#"gateway_config_reloads_total{result="other"}"#),
            None
        );
        assert_eq!(value(TEXT, "gateway_nothing"), None);
        assert_eq!(value("", "gateway_requests_in_flight"), None);
    }

    #[test]
    fn escaped_label_values_and_timestamps() {
        assert_eq!(
            value(TEXT, r#"gateway_odd{route="x",path="/a \"b\" }c\\d"}"#),
            Some(4.0)
        );
        assert_eq!(
            value(
                TEXT,
                r#"gateway_request_duration_seconds_bucket{le="+Inf",route="r"}"#
            ),
            Some(7.0)
        );
    }

    #[test]
    #[should_panic(expected = "not a Prometheus series")]
    fn a_malformed_series_is_a_test_bug() {
        value(TEXT, r#"gateway_config_reloads_total{result="success}"#);
    }
}
