//! OTLP/HTTP's JSON encoding of a batch of spans (`ExportTraceServiceRequest`): IDs in hex,
//! 64-bit integers and times as decimal strings, as the protocol's JSON mapping asks.

use serde::Serialize;

use super::record::{AttrValue, SpanRecord};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: Resource<'a>,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct Resource<'a> {
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Vec<Span<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Span<'a> {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<String>,
    name: &'a str,
    kind: u8,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<KeyValue<'a>>,
    status: Status<'a>,
}

#[derive(Serialize)]
struct Status<'a> {
    /// 0 unset, 2 error.
    code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: AnyValue<'a>,
}

#[derive(Serialize)]
enum AnyValue<'a> {
    #[serde(rename = "stringValue")]
    Str(&'a str),
    #[serde(rename = "intValue")]
    Int(String),
    #[serde(rename = "boolValue")]
    Bool(bool),
    #[serde(rename = "doubleValue")]
    Double(f64),
}

impl<'a> From<&'a AttrValue> for AnyValue<'a> {
    fn from(v: &'a AttrValue) -> Self {
        match v {
            AttrValue::Str(s) => Self::Str(s),
            AttrValue::Int(i) => Self::Int(i.to_string()),
            AttrValue::Bool(b) => Self::Bool(*b),
            AttrValue::Double(d) => Self::Double(*d),
        }
    }
}

/// The request body for `POST /v1/traces`.
pub fn export_request(service_name: &str, spans: &[SpanRecord]) -> Vec<u8> {
    let body = ExportRequest {
        resource_spans: [ResourceSpans {
            resource: Resource {
                attributes: vec![
                    KeyValue {
                        key: "service.name",
                        value: AnyValue::Str(service_name),
                    },
                    KeyValue {
                        key: "service.version",
                        value: AnyValue::Str(env!("CARGO_PKG_VERSION")),
                    },
                ],
            },
            scope_spans: [ScopeSpans {
                scope: Scope {
                    name: "certgate",
                    version: env!("CARGO_PKG_VERSION"),
                },
                spans: spans.iter().map(span).collect(),
            }],
        }],
    };
    // Serializing these plain structs cannot fail; an empty body would be refused loudly
    // by the receiver rather than crash the exporter.
    serde_json::to_vec(&body).unwrap_or_default()
}

fn span(s: &SpanRecord) -> Span<'_> {
    Span {
        trace_id: hex::encode(s.trace_id),
        span_id: hex::encode(s.span_id),
        parent_span_id: s.parent_span_id.map(hex::encode),
        name: s.name,
        kind: s.kind as u8,
        start_time_unix_nano: s.start_unix_nanos.to_string(),
        end_time_unix_nano: s.end_unix_nanos.to_string(),
        attributes: s
            .attributes
            .iter()
            .map(|(k, v)| KeyValue {
                key: k,
                value: v.into(),
            })
            .collect(),
        status: Status {
            code: if s.error.is_some() { 2 } else { 0 },
            message: s.error.as_deref(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::SpanKind;
    use super::*;

    #[test]
    fn a_span_is_encoded_as_the_json_mapping_says() {
        let s = SpanRecord {
            trace_id: [0xab; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: Some([9; 8]),
            name: "upstream",
            kind: SpanKind::Client,
            start_unix_nanos: 1_700_000_000_000_000_001,
            end_unix_nanos: 1_700_000_000_000_000_002,
            attributes: vec![
                ("route", AttrValue::Str("/app".into())),
                ("status", AttrValue::Int(200)),
            ],
            error: Some("refused".into()),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&export_request("gw", &[s])).expect("json");
        let rs = &v["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0]["value"]["stringValue"],
            "gw"
        );
        let span = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "ab".repeat(16));
        assert_eq!(span["spanId"], "0102030405060708");
        assert_eq!(span["parentSpanId"], "09".repeat(8));
        assert_eq!(span["kind"], 3);
        assert_eq!(span["startTimeUnixNano"], "1700000000000000001");
        assert_eq!(span["attributes"][1]["value"]["intValue"], "200");
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["status"]["message"], "refused");
    }
}
