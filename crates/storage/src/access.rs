//! Per-key access clocks for eviction, OBJECT IDLETIME and OBJECT FREQ: Redis 7.0's 24-bit
//! `lru` field, kept in the low 24 bits of each entry's version word (`entry.rs`).
//!
//! What the 24 bits mean depends on the policy, as in Redis:
//! - **LRU** (every policy but the `*-lfu` ones): the time of the last access in seconds,
//!   modulo 2^24 (about 194 days; an idle time across a wrap is computed as Redis does).
//! - **LFU**: bits 23..8 the time of the last decrement in minutes modulo 2^16, bits 7..0 a
//!   logarithmic access counter (Redis's `LFULogIncr`, `lfu-log-factor`), which loses one for
//!   every `lfu-decay-time` minutes the key was not accessed. A new key starts at 5
//!   (`LFU_INIT_VAL`), so it is not evicted before it had a chance to be read.
//!
//! A change of policy reinterprets the bits, as Redis does.
//!
//! The settings are process-wide, as Redis's globals are, and set by the server from its
//! configuration ([`set_policy`]): plain `std` atomics read with `Relaxed`, since each is an
//! independent number that orders nothing (the loom models have nothing to explore here).
//! Time is the caller's `now_ms`, as for expiry: storage reads no clock.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rand::Rng;

/// The bits of the clock.
pub const CLOCK_BITS: u32 = 24;
/// The largest clock value.
pub const CLOCK_MAX: u32 = (1 << CLOCK_BITS) - 1;
/// Redis's `LFU_INIT_VAL`: the counter of a new key.
pub const LFU_INIT_VAL: u8 = 5;

static LFU: AtomicBool = AtomicBool::new(false);
static LFU_LOG_FACTOR: AtomicU32 = AtomicU32::new(10);
static LFU_DECAY_TIME: AtomicU32 = AtomicU32::new(1);

/// Sets what the clocks count: LFU when `lfu` (a `*-lfu` policy), LRU otherwise; and the LFU
/// counter's `lfu-log-factor` and `lfu-decay-time` (minutes).
pub fn set_policy(lfu: bool, log_factor: u32, decay_time: u32) {
    LFU.store(lfu, Ordering::Relaxed);
    LFU_LOG_FACTOR.store(log_factor, Ordering::Relaxed);
    LFU_DECAY_TIME.store(decay_time, Ordering::Relaxed);
}

/// Returns true if and only if the clocks count LFU (a `*-lfu` policy is set).
pub fn is_lfu() -> bool {
    LFU.load(Ordering::Relaxed)
}

fn lru_now(now_ms: u64) -> u32 {
    // Truncation is the modulo 2^24 the clock is defined by.
    ((now_ms / 1000) as u32) & CLOCK_MAX
}

fn minutes_now(now_ms: u64) -> u32 {
    ((now_ms / 60_000) as u32) & 0xffff
}

/// The clock of a key created at `now_ms`.
pub(crate) fn initial(now_ms: u64) -> u32 {
    if is_lfu() {
        (minutes_now(now_ms) << 8) | u32::from(LFU_INIT_VAL)
    } else {
        lru_now(now_ms)
    }
}

/// The clock of a key with clock `clock` accessed at `now_ms` (Redis's `updateLFU`, or the LRU
/// clock's time).
pub(crate) fn touched(clock: u32, now_ms: u64) -> u32 {
    if is_lfu() {
        let counter = log_incr(decayed_counter(clock, now_ms));
        (minutes_now(now_ms) << 8) | u32::from(counter)
    } else {
        lru_now(now_ms)
    }
}

/// The clock RESTORE's `IDLETIME seconds` or `FREQ counter` sets (Redis's
/// `objectSetLRUOrLFU`): FREQ under an LFU policy, IDLETIME under LRU, and None when the option
/// given is not the one the policy in force keeps.
pub fn clock_from(idle_secs: Option<u64>, freq: Option<u8>, now_ms: u64) -> Option<u32> {
    if is_lfu() {
        freq.map(|freq| (minutes_now(now_ms) << 8) | u32::from(freq))
    } else {
        idle_secs.map(|idle| {
            let idle = u32::try_from(idle % u64::from(CLOCK_MAX)).unwrap_or(0);
            let now = lru_now(now_ms);
            if now >= idle {
                now - idle
            } else {
                CLOCK_MAX - (idle - now)
            }
        })
    }
}

/// Seconds since the access an LRU clock records (Redis's `estimateObjectIdleTime`, in
/// seconds: a clock ahead of now has wrapped).
pub fn idle_secs(clock: u32, now_ms: u64) -> u64 {
    let now = lru_now(now_ms);
    let clock = clock & CLOCK_MAX;
    u64::from(if now >= clock {
        now - clock
    } else {
        CLOCK_MAX - clock + now
    })
}

/// An LFU clock's counter after the decay since its last decrement (Redis's
/// `LFUDecrAndReturn`).
pub fn decayed_counter(clock: u32, now_ms: u64) -> u8 {
    let last = (clock >> 8) & 0xffff;
    let counter = clock & 0xff;
    let now = minutes_now(now_ms);
    let elapsed = if now >= last {
        now - last
    } else {
        0xffff - last + now
    };
    let decay = LFU_DECAY_TIME.load(Ordering::Relaxed);
    let periods = elapsed.checked_div(decay).unwrap_or(0);
    u8::try_from(counter.saturating_sub(periods)).unwrap_or(u8::MAX)
}

/// Redis's `LFULogIncr`: the counter grows by one with probability 1 / ((counter - 5) *
/// lfu-log-factor + 1), so it takes about a million accesses to reach 255 at factor 10.
fn log_incr(counter: u8) -> u8 {
    if counter == u8::MAX {
        return counter;
    }
    let base = f64::from(counter.saturating_sub(LFU_INIT_VAL));
    let factor = f64::from(LFU_LOG_FACTOR.load(Ordering::Relaxed));
    let p = 1.0 / (base * factor + 1.0);
    if p >= 1.0 || rand::rng().random::<f64>() < p {
        counter + 1
    } else {
        counter
    }
}

/// How good a candidate for eviction a key with this clock is under the policy in force,
/// higher is better (Redis's `idle` in `evictionPoolPopulate`): its idle time in ms under LRU,
/// 255 less its decayed counter under LFU.
pub fn eviction_score(clock: u32, now_ms: u64) -> u64 {
    if is_lfu() {
        u64::from(u8::MAX - decayed_counter(clock, now_ms))
    } else {
        idle_secs(clock, now_ms) * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_idle_time_counts_seconds_and_survives_the_wrap() {
        let at = 1_000_000_000;
        assert_eq!(idle_secs(lru_now(at), at + 5_500), 5);
        // A clock just before the wrap, read just after it.
        let late = u64::from(CLOCK_MAX) * 1000;
        assert_eq!(idle_secs(lru_now(late), late + 3_000), 2);
    }

    #[test]
    fn lfu_counter_decays_one_per_period_and_grows_slowly() {
        let now = 60_000 * 100;
        let clock = (minutes_now(now) << 8) | 10;
        assert_eq!(decayed_counter(clock, now), 10);
        // lfu-decay-time is 1 minute by default: three minutes later, three less.
        assert_eq!(decayed_counter(clock, now + 3 * 60_000), 7);
        assert_eq!(decayed_counter(clock, now + 300 * 60_000), 0);
        // At LFU_INIT_VAL the next access always counts.
        assert_eq!(log_incr(LFU_INIT_VAL), LFU_INIT_VAL + 1);
        assert_eq!(log_incr(u8::MAX), u8::MAX);
    }
}
