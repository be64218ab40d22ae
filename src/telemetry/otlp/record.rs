//! What the exporter keeps of one span: its IDs, name, kind, times and fields, recorded from
//! tracing's field values as OTLP attribute values.

use std::fmt;

use tracing::field::{Field, Visit};

/// OTLP's span kinds (the numbers of the protocol's `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

impl SpanKind {
    /// The kind of a span by its name, for spans that cannot carry an `otel.kind` field
    /// without it showing in every log line (the request span is in the info log).
    pub(super) fn of_name(name: &str) -> Self {
        match name {
            "request" => Self::Server,
            _ => Self::Internal,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "server" => Some(Self::Server),
            "client" => Some(Self::Client),
            "internal" => Some(Self::Internal),
            _ => None,
        }
    }
}

/// One attribute value, typed as OTLP types it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
}

/// A span as it is exported, once closed.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: &'static str,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Set when the span recorded an `error` field: the span's status is then "error".
    pub error: Option<String>,
}

/// The longest attribute text kept: a field is context, not a payload.
const MAX_TEXT: usize = 256;

/// Collects a span's fields. `otel.kind` sets the kind, `error` the error status; every
/// other field becomes an attribute.
pub(super) struct FieldRecorder<'a> {
    pub kind: &'a mut SpanKind,
    pub error: &'a mut Option<String>,
    pub attributes: &'a mut Vec<(&'static str, AttrValue)>,
}

impl FieldRecorder<'_> {
    fn put(&mut self, field: &Field, value: AttrValue) {
        match (field.name(), &value) {
            ("otel.kind", AttrValue::Str(s)) => {
                if let Some(k) = SpanKind::parse(s) {
                    *self.kind = k;
                }
            }
            ("error", v) => *self.error = Some(text_of(v)),
            (name, _) => {
                // A field recorded again (`Span::record`) replaces its earlier value.
                if let Some(slot) = self.attributes.iter_mut().find(|(n, _)| *n == name) {
                    slot.1 = value;
                } else {
                    self.attributes.push((name, value));
                }
            }
        }
    }
}

fn text_of(v: &AttrValue) -> String {
    match v {
        AttrValue::Str(s) => s.clone(),
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Bool(b) => b.to_string(),
        AttrValue::Double(d) => d.to_string(),
    }
}

fn bounded(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Visit for FieldRecorder<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, AttrValue::Str(bounded(value.to_owned())));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, AttrValue::Int(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(
            field,
            AttrValue::Int(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, AttrValue::Bool(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, AttrValue::Double(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, AttrValue::Str(bounded(format!("{value:?}"))));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(
            field,
            AttrValue::Str(bounded(super::super::error_chain(value))),
        );
    }
}
