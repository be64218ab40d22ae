//! Latency samples and their summary. Owns arithmetic only.

/// Latencies in microseconds; sorted once at the end (a few million samples at most).
#[derive(Default)]
pub struct Samples {
    us: Vec<u32>,
}

impl Samples {
    pub fn push(&mut self, d: std::time::Duration) {
        self.us
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn extend(&mut self, other: Samples) {
        self.us.extend(other.us);
    }

    /// (p50, p99, max) in microseconds.
    pub fn percentiles(&mut self) -> (u32, u32, u32) {
        if self.us.is_empty() {
            return (0, 0, 0);
        }
        self.us.sort_unstable();
        let at = |q: f64| {
            let i = ((self.us.len() as f64 - 1.0) * q).round() as usize;
            self.us[i]
        };
        (at(0.50), at(0.99), *self.us.last().unwrap_or(&0))
    }
}
