//! Checks of `observability:`: the service name, the access log and OTLP span export.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::model::{AccessLog, AccessLogOutput, Observability, Otlp};
use super::{Problem, Validator, defaults, duration, file};

impl Validator<'_> {
    pub(super) fn observability(&mut self, v: Option<serde_json::Value>) -> Option<Observability> {
        let o: file::Observability = match v {
            None => file::Observability::default(),
            Some(v) => self.decode(v, "observability")?,
        };
        let before = self.count();
        let service_name = o
            .service_name
            .unwrap_or_else(|| defaults::SERVICE_NAME.to_string());
        if service_name.trim().is_empty() {
            self.err("observability.service_name", Problem::Empty);
        }
        let access_log = match o.access_log {
            None | Some(file::AccessLog::Short(file::AccessLogShort::Off)) => None,
            Some(file::AccessLog::Short(file::AccessLogShort::Json)) => Some(AccessLog {
                output: defaults::ACCESS_LOG_OUTPUT,
                sample_successful: defaults::ACCESS_LOG_SAMPLE_SUCCESSFUL,
                buffer: defaults::ACCESS_LOG_BUFFER,
            }),
            Some(file::AccessLog::Full(a)) => Some(self.access_log(a)),
        };
        let otlp = o.otlp.map(|t| self.otlp(t));
        if self.count() > before {
            return None;
        }
        Some(Observability {
            service_name,
            access_log,
            otlp,
        })
    }

    fn access_log(&mut self, a: file::AccessLogFull) -> AccessLog {
        let output = match a.output.as_deref() {
            None => defaults::ACCESS_LOG_OUTPUT,
            Some("stdout") => AccessLogOutput::Stdout,
            Some("stderr") => AccessLogOutput::Stderr,
            Some("") => {
                self.err("observability.access_log.output", Problem::NoOutput);
                defaults::ACCESS_LOG_OUTPUT
            }
            Some(path) => {
                // As `run` opens it: a missing or unwritable directory fails here, not at start.
                if let Some(host) = self.host
                    && let Err(error) = host.open_access_log(Path::new(path))
                {
                    self.err(
                        "observability.access_log.output",
                        Problem::CannotOpen {
                            file: path.to_string(),
                            error,
                        },
                    );
                }
                AccessLogOutput::File(PathBuf::from(path))
            }
        };
        let sample_successful = a
            .sample_successful
            .unwrap_or(defaults::ACCESS_LOG_SAMPLE_SUCCESSFUL);
        self.ratio(
            sample_successful,
            "observability.access_log.sample_successful",
        );
        let buffer = a.buffer.unwrap_or(defaults::ACCESS_LOG_BUFFER);
        self.within(
            "observability.access_log.buffer",
            buffer,
            defaults::ACCESS_LOG_BUFFER_RANGE,
        );
        AccessLog {
            output,
            sample_successful,
            buffer,
        }
    }

    fn otlp(&mut self, t: file::Otlp) -> Otlp {
        match http::Uri::from_str(&t.endpoint) {
            Ok(u)
                if u.scheme_str() == Some("http")
                    && u.host().is_some()
                    && u.port_u16().is_some() => {}
            _ => self.err(
                "observability.otlp.endpoint",
                Problem::BadOtlpEndpoint(t.endpoint.clone()),
            ),
        }
        let sample_ratio = t.sample_ratio.unwrap_or(defaults::OTLP_SAMPLE_RATIO);
        self.ratio(sample_ratio, "observability.otlp.sample_ratio");
        let timeout = duration::or(t.timeout, defaults::OTLP_TIMEOUT);
        self.within(
            "observability.otlp.timeout",
            timeout,
            defaults::OTLP_TIMEOUT_RANGE,
        );
        let queue_size = t.queue_size.unwrap_or(defaults::OTLP_QUEUE_SIZE);
        self.within(
            "observability.otlp.queue_size",
            queue_size,
            defaults::OTLP_QUEUE_SIZE_RANGE,
        );
        Otlp {
            endpoint: t.endpoint.trim_end_matches('/').to_string(),
            protocol: t.protocol.unwrap_or(defaults::OTLP_PROTOCOL),
            sample_ratio,
            timeout,
            queue_size,
        }
    }

    /// A share from 0 to 1 (`sample_ratio`, a shadow's `sample` and `noise`).
    pub(super) fn ratio(&mut self, r: f64, path: &str) {
        if !(0.0..=1.0).contains(&r) {
            self.err(path, Problem::NotARatio(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::model::OtlpProtocol;
    use crate::config::tests::{MINIMAL, at, load, out_of_range, problems};

    #[test]
    fn no_block_is_the_default_block() {
        let o = load(MINIMAL).observability;
        assert_eq!(o, Observability::default());
        assert_eq!(o.service_name, defaults::SERVICE_NAME);
        assert_eq!((o.access_log, o.otlp), (None, None));
        let off = load(&format!("{MINIMAL}observability: {{ access_log: off }}\n"));
        assert_eq!(off.observability, Observability::default());
    }

    #[test]
    fn the_short_access_log_is_the_full_one_with_defaults() {
        let short = load(&format!("{MINIMAL}observability: {{ access_log: json }}\n"));
        let full = load(&format!(
            "{MINIMAL}observability: {{ access_log: {{ format: json }} }}\n"
        ));
        assert_eq!(short.observability, full.observability);
        assert_eq!(
            short.observability.access_log,
            Some(AccessLog {
                output: defaults::ACCESS_LOG_OUTPUT,
                sample_successful: defaults::ACCESS_LOG_SAMPLE_SUCCESSFUL,
                buffer: defaults::ACCESS_LOG_BUFFER,
            })
        );
    }

    #[test]
    fn configured_values_are_kept() {
        let o = load(&format!(
            "{MINIMAL}observability:\n  service_name: edge\n  access_log: {{ output: /var/log/gw.log, sample_successful: 0.1, buffer: 5 }}\n  otlp: {{ endpoint: \"http://c:4318/\", protocol: http, sample_ratio: 0.5, timeout: 1s, queue_size: 9 }}\n"
        ))
        .observability;
        assert_eq!(o.service_name, "edge");
        assert_eq!(
            o.access_log,
            Some(AccessLog {
                output: AccessLogOutput::File("/var/log/gw.log".into()),
                sample_successful: 0.1,
                buffer: 5,
            })
        );
        assert_eq!(
            o.otlp,
            Some(Otlp {
                endpoint: "http://c:4318".into(),
                protocol: OtlpProtocol::Http,
                sample_ratio: 0.5,
                timeout: Duration::from_secs(1),
                queue_size: 9,
            })
        );
        let otlp = load(&format!(
            "{MINIMAL}observability: {{ otlp: {{ endpoint: \"http://c:4317\" }} }}\n"
        ))
        .observability
        .otlp
        .unwrap();
        assert_eq!(
            (
                otlp.protocol,
                otlp.sample_ratio,
                otlp.timeout,
                otlp.queue_size
            ),
            (
                defaults::OTLP_PROTOCOL,
                defaults::OTLP_SAMPLE_RATIO,
                defaults::OTLP_TIMEOUT,
                defaults::OTLP_QUEUE_SIZE
            )
        );
    }

    #[test]
    fn outputs_buffers_and_queues_are_checked() {
        let src = format!(
            "{MINIMAL}observability:\n  access_log: {{ output: \"\", buffer: 0 }}\n  otlp: {{ endpoint: \"http://c\", queue_size: 0, sample_ratio: 2 }}\n"
        );
        assert_eq!(
            problems(&src),
            at([
                ("observability.access_log.output", Problem::NoOutput),
                (
                    "observability.access_log.buffer",
                    out_of_range(defaults::ACCESS_LOG_BUFFER_RANGE, 0)
                ),
                (
                    "observability.otlp.endpoint",
                    Problem::BadOtlpEndpoint("http://c".into())
                ),
                (
                    "observability.otlp.queue_size",
                    out_of_range(defaults::OTLP_QUEUE_SIZE_RANGE, 0)
                ),
                ("observability.otlp.sample_ratio", Problem::NotARatio(2.0)),
            ])
        );
    }
}
