//! Phase spans of the request path that cost (next to) nothing when nothing records them.
//!
//! A span the subscriber turned down still keeps its metadata: `record` then looks the
//! field up by name, and `.instrument` enters, exits and drops it on every poll. Across the
//! five phases of a proxied request that was about 400 instructions with no exporter and
//! an `info` log. [`phase_span!`] gives `Span::none()` instead, and [`in_span`] polls the
//! future bare when the span is none.
//!
//! The span is still made by the caller's macro, at the caller's site, so the decision is
//! exactly the subscriber's: the trace exporter (every certgate span when `[trace]` is
//! set) or the log filter, which prints spans of that level as the context of a line.

use std::future::Future;

use futures_util::future::Either;
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

/// `tracing::span!` (same arguments), or `Span::none()` when no layer wants the span. The
/// level is checked first, against the most verbose level any layer takes (one atomic
/// load), so a phase below it never makes (and drops) a disabled span at all.
macro_rules! phase_span {
    ($lvl:expr, $($rest:tt)*) => {{
        if ::tracing::level_enabled!($lvl) {
            let span = ::tracing::span!($lvl, $($rest)*);
            if span.is_disabled() { ::tracing::Span::none() } else { span }
        } else {
            ::tracing::Span::none()
        }
    }};
}
pub(crate) use phase_span;

/// `fut` inside (a clone of) `span`, or bare when `span` is `Span::none()`, which is then
/// neither cloned nor dropped again. Not an `async fn`: that would hold `fut` twice (the
/// argument and the awaited wrapper), and the request future is several kilobytes, copied
/// whenever it moves (into hyper's box, for one).
pub fn in_span<F: Future>(span: &Span, fut: F) -> Either<F, Instrumented<F>> {
    if span.is_none() {
        Either::Left(fut)
    } else {
        Either::Right(fut.instrument(span.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn with_level<T>(level: tracing::Level, f: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::from_level(level));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn a_span_nobody_records_is_none() {
        let span = with_level(tracing::Level::INFO, || {
            phase_span!(tracing::Level::DEBUG, "phase", field = 1)
        });
        assert!(span.is_none());
        // `record` on it is a no-op, not a lookup of the field.
        span.record("field", 2);
        assert!(span.metadata().is_none());
    }

    #[test]
    fn a_recorded_span_is_made_with_its_fields() {
        with_level(tracing::Level::DEBUG, || {
            let span = phase_span!(tracing::Level::DEBUG, "phase", field = 1);
            assert!(!span.is_disabled());
            let meta = span
                .metadata()
                .map(|m| (m.name(), m.fields().field("field").is_some()));
            assert_eq!(meta, Some(("phase", true)));
        });
    }

    #[test]
    fn in_span_adds_no_more_than_the_span_to_the_future() {
        let big = async {
            let buffer = [0u8; 4096];
            std::future::ready(()).await;
            buffer.len()
        };
        let size = std::mem::size_of_val(&big);
        let wrapped = in_span(&Span::none(), big);
        assert!(
            std::mem::size_of_val(&wrapped) <= size + 64,
            "{size} -> {}",
            std::mem::size_of_val(&wrapped)
        );
    }

    #[test]
    fn in_span_runs_the_future_in_the_span_or_bare() {
        with_level(tracing::Level::DEBUG, || {
            let span = phase_span!(tracing::Level::DEBUG, "phase");
            let id = span.id();
            let seen = block_on(in_span(&span, async { Span::current().id() }));
            assert_eq!(seen, id);
            let bare = block_on(in_span(&Span::none(), async { Span::current().id() }));
            assert_eq!(bare, None);
        });
    }

    fn block_on<F: Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(fut))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }
}
