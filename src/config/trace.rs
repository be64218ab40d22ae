//! `[trace]`: optional export of certgate's tracing spans to an OpenTelemetry collector.

use serde::Deserialize;

use crate::telemetry::otlp::{Endpoint, OtlpSettings};

/// `[trace]`. Absent or without `otlp_endpoint`: no spans leave the process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    /// The OTLP/HTTP receiver, `http://127.0.0.1:4318` (a local collector or agent);
    /// spans are posted to `<endpoint>/v1/traces` as JSON.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans; tells gateway instances' roles apart.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Share of requests traced, 0.0 to 1.0 (each request's trace is kept whole or not
    /// at all).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
        }
    }
}

fn default_service_name() -> String {
    "certgate".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}

impl TraceConfig {
    /// The exporter's settings, or `None` when export is off; every mistake explained.
    pub fn settings(&self) -> Result<Option<OtlpSettings>, String> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(format!(
                "[trace] sample_ratio must be between 0.0 and 1.0, not {}",
                self.sample_ratio
            ));
        }
        if self.service_name.is_empty()
            || self.service_name.len() > 64
            || !self
                .service_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(
                "[trace] service_name must be 1 to 64 characters of A-Z a-z 0-9 - _ .".into(),
            );
        }
        let Some(url) = &self.otlp_endpoint else {
            return Ok(None);
        };
        let endpoint =
            Endpoint::parse(url).map_err(|why| format!("[trace] otlp_endpoint {why}"))?;
        Ok(Some(OtlpSettings {
            endpoint,
            service_name: self.service_name.clone(),
            sample_ratio: self.sample_ratio,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_settings_are_checked() {
        let off = TraceConfig::default();
        assert!(off.settings().expect("default").is_none());
        let on = TraceConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            ..TraceConfig::default()
        };
        assert!(on.settings().expect("on").is_some());
        for bad in [
            TraceConfig {
                sample_ratio: 1.5,
                ..on.clone()
            },
            TraceConfig {
                service_name: "a b".into(),
                ..on.clone()
            },
            TraceConfig {
                otlp_endpoint: Some("https://collector:4318".into()),
                ..on.clone()
            },
        ] {
            assert!(bad.settings().is_err(), "{bad:?}");
        }
    }
}
