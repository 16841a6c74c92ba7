//! Retry timing: exponential backoff with full jitter, capped, and a circuit breaker.
//!
//! Both are deterministic state machines: the random source is a [`Rng`] the caller passes in
//! and time is an [`Instant`] argument, so tests drive them without sleeping.
//!
//! Full jitter (delay uniform in `[0, min(cap, base · 2^attempt)]`) spreads a fleet's retries
//! after a Hub outage instead of synchronising them. A `Retry-After` from the Hub is a floor.
//!
//! The breaker: `Closed` counts consecutive failures; at the threshold it opens. `Open` refuses
//! every request until its cool-down has passed, then lets exactly one trial through
//! (`HalfOpen`). The trial's success closes it; its failure re-opens it with a doubled cool-down
//! (capped).

use std::time::{Duration, Instant};

/// A source of random 64-bit numbers.
pub trait Rng {
    /// The next random number.
    fn next_u64(&mut self) -> u64;
}

/// The operating system's random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

impl Rng for OsRng {
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        // On failure (no entropy source at all) fall back to the clock: jitter is not a secret,
        // and a retry must not fail for want of it.
        if getrandom::getrandom(&mut b).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            return u64::from(nanos).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        u64::from_le_bytes(b)
    }
}

/// Longest `Retry-After` honoured (a larger value is capped to this).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// `base` is the first ceiling, doubled per failure up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// Failures since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The ceiling for the next delay: `min(cap, base · 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure and returns how long to wait: uniform in `[0, ceiling]`, but at least
    /// `retry_after` (capped at [`MAX_RETRY_AFTER`]).
    pub fn next_delay(&mut self, rng: &mut dyn Rng, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jittered = Duration::from_millis(match ceiling_ms.checked_add(1) {
            Some(span) => rng.next_u64() % span,
            None => rng.next_u64(),
        });
        match retry_after {
            Some(floor) => jittered.max(floor.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }

    /// Records a success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow; failures are counted.
    Closed,
    /// Requests are refused until the cool-down passes.
    Open,
    /// One trial request is in flight.
    HalfOpen,
}

/// A circuit breaker (see the module docs).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    base_cooldown: Duration,
    max_cooldown: Duration,
    cooldown: Duration,
    failures: u32,
    state: CircuitState,
    opened_at: Option<Instant>,
}

impl CircuitBreaker {
    /// Opens after `threshold` consecutive failures (at least 1) for `cooldown`, doubled after
    /// each failed trial up to `max_cooldown`.
    pub fn new(threshold: u32, cooldown: Duration, max_cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            base_cooldown: cooldown,
            max_cooldown: max_cooldown.max(cooldown),
            cooldown,
            failures: 0,
            state: CircuitState::Closed,
            opened_at: None,
        }
    }

    /// The state as of `now` (an open breaker whose cool-down passed reports `HalfOpen` only
    /// once [`CircuitBreaker::try_acquire`] let the trial through).
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// May a request be sent at `now`? Open: no, until the cool-down passed; then yes, once
    /// (the breaker is half-open until that request's outcome is recorded).
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        match self.state {
            CircuitState::Closed => true,
            CircuitState::HalfOpen => false,
            CircuitState::Open => {
                let due = self
                    .opened_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= self.cooldown);
                if due {
                    self.state = CircuitState::HalfOpen;
                }
                due
            }
        }
    }

    /// How long until an open breaker lets a trial through (zero when closed or due).
    pub fn retry_in(&self, now: Instant) -> Duration {
        match (self.state, self.opened_at) {
            (CircuitState::Open, Some(at)) => self
                .cooldown
                .saturating_sub(now.saturating_duration_since(at)),
            _ => Duration::ZERO,
        }
    }

    /// Records a success: closed, counters reset.
    pub fn on_success(&mut self) {
        self.state = CircuitState::Closed;
        self.failures = 0;
        self.cooldown = self.base_cooldown;
        self.opened_at = None;
    }

    /// Records a failure at `now`.
    pub fn on_failure(&mut self, now: Instant) {
        match self.state {
            CircuitState::HalfOpen => {
                self.cooldown = self.cooldown.saturating_mul(2).min(self.max_cooldown);
                self.open(now);
            }
            CircuitState::Open => self.opened_at = Some(now),
            CircuitState::Closed => {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= self.threshold {
                    self.open(now);
                }
            }
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = CircuitState::Open;
        self.opened_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the numbers given, round and round.
    struct Fixed(Vec<u64>, usize);

    impl Rng for Fixed {
        fn next_u64(&mut self) -> u64 {
            let v = self.0[self.1 % self.0.len()];
            self.1 += 1;
            v
        }
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut max = Fixed(vec![u64::MAX - 1], 0); // ceiling_ms (mod span) for spans that divide it
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_millis());
            b.next_delay(&mut max, None);
        }
        assert_eq!(
            ceilings,
            [
                500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
            ]
        );
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
        assert_eq!(b.attempt(), 0);
    }

    #[test]
    fn delays_are_uniform_below_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_secs(60));
        // 1000 ms ceiling: delay = r mod 1001.
        let mut rng = Fixed(vec![0, 1000, 1001, 2500], 0);
        assert_eq!(b.next_delay(&mut rng, None), Duration::ZERO);
        b.reset();
        assert_eq!(b.next_delay(&mut rng, None), Duration::from_millis(1000));
        b.reset();
        assert_eq!(b.next_delay(&mut rng, None), Duration::ZERO);
        b.reset();
        assert_eq!(b.next_delay(&mut rng, None), Duration::from_millis(498));
        // Over many draws from the OS, never above the ceiling and not all equal.
        let mut os = OsRng;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            b.reset();
            let d = b.next_delay(&mut os, None);
            assert!(d <= Duration::from_millis(1000));
            seen.insert(d);
        }
        assert!(seen.len() > 50, "jitter is not spreading: {}", seen.len());
    }

    #[test]
    fn retry_after_is_a_floor_and_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut zero = Fixed(vec![0], 0);
        assert_eq!(
            b.next_delay(&mut zero, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            b.next_delay(&mut zero, Some(Duration::from_secs(86_400))),
            MAX_RETRY_AFTER
        );
        // A larger jittered delay wins over a small Retry-After.
        let mut big = Fixed(vec![900], 0);
        b.reset();
        b.next_delay(&mut zero, None);
        b.next_delay(&mut zero, None);
        b.next_delay(&mut zero, None);
        // Ceiling now 800 ms: 900 mod 801 = 99 ms, above the 50 ms floor.
        assert_eq!(
            b.next_delay(&mut big, Some(Duration::from_millis(50))),
            Duration::from_millis(99)
        );
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut rng = Fixed(vec![u64::MAX], 0);
        for _ in 0..100 {
            assert!(b.next_delay(&mut rng, None) <= Duration::from_secs(300));
        }
        assert_eq!(b.ceiling(), Duration::from_secs(300));
    }

    #[test]
    fn breaker_opens_after_threshold_then_half_opens_once() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut cb = CircuitBreaker::new(3, Duration::from_secs(10), Duration::from_secs(60));
        for i in 0..2 {
            assert!(cb.try_acquire(s(i)));
            cb.on_failure(s(i));
            assert_eq!(cb.state(), CircuitState::Closed);
        }
        cb.on_failure(s(2));
        assert_eq!(cb.state(), CircuitState::Open);
        assert!(!cb.try_acquire(s(5)));
        assert_eq!(cb.retry_in(s(5)), Duration::from_secs(7));
        // Cool-down passed: exactly one trial.
        assert!(cb.try_acquire(s(12)));
        assert_eq!(cb.state(), CircuitState::HalfOpen);
        assert!(!cb.try_acquire(s(12)));
        // The trial fails: open again, cool-down doubled.
        cb.on_failure(s(13));
        assert_eq!(cb.state(), CircuitState::Open);
        assert!(!cb.try_acquire(s(13 + 19)));
        assert!(cb.try_acquire(s(13 + 20)));
        cb.on_failure(s(33));
        cb.try_acquire(s(33 + 40));
        cb.on_failure(s(73));
        cb.try_acquire(s(73 + 60)); // capped at 60, not 80
        assert_eq!(cb.state(), CircuitState::HalfOpen);
        // The trial succeeds: closed, and the cool-down is back to its base.
        cb.on_success();
        assert_eq!(cb.state(), CircuitState::Closed);
        for i in 0..3 {
            cb.on_failure(s(200 + i));
        }
        assert_eq!(cb.retry_in(s(202)), Duration::from_secs(10));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut cb = CircuitBreaker::new(2, Duration::from_secs(1), Duration::from_secs(1));
        cb.on_failure(t0);
        cb.on_success();
        cb.on_failure(t0);
        assert_eq!(cb.state(), CircuitState::Closed);
        cb.on_failure(t0);
        assert_eq!(cb.state(), CircuitState::Open);
    }
}
