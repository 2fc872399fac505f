//! How a traversal thread yields to the clients: the load gate that keeps all but one
//! traversal thread waiting while the clients are busy, and the pace that rests the one that
//! works when it competes with them for its core.

use super::*;

/// Clients served at least this many commands per second: the server is busy.
pub(super) const BUSY_COMMANDS_PER_SEC: f64 = 10_000.0;

/// How long a traversal thread waits before looking at the clients again.
pub(super) const BUSY_RECHECK: Duration = Duration::from_millis(1);

/// Tells a traversal thread whether the clients are busy, from the rate of commands served
/// since it last asked.
///
/// Why: two `SCHED_IDLE` traversal threads on a loaded server each take whatever moment a core
/// goes idle, and every client thread that wakes then has to preempt one: the clients kept
/// clearly more of their throughput during a save with one traversal thread than with two
/// (docs/benchmarks.md). So under load only the first traversal thread works; the
/// others wait between shards (never inside one, so the first can always finish the save),
/// and rejoin when the clients go quiet: an idle server still saves with every core.
#[derive(Debug, Default)]
pub(super) struct LoadGate {
    pub(super) last: Option<(Instant, u64)>,
}

impl LoadGate {
    /// True if and only if the clients were served at least `BUSY_COMMANDS_PER_SEC` since the
    /// last call (the first call only starts the clock).
    pub(super) fn clients_busy(&mut self, served: u64, now: Instant) -> bool {
        let busy = self.last.is_some_and(|(at, before)| {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            secs > 0.0 && served.saturating_sub(before) as f64 >= BUSY_COMMANDS_PER_SEC * secs
        });
        self.last = Some((now, served));
        busy
    }
}

/// How long a traversal thread works, under idle priority and busy clients, before it looks
/// at whether it competes for its core ([`Pace`]).
pub(super) const PACE_ACTIVE: Duration = Duration::from_millis(1);

/// How long a traversal thread that competes with busy clients for its core rests after
/// [`PACE_ACTIVE`] of work: it then takes at most a fifth of one core.
pub(super) const PACE_PAUSE: Duration = Duration::from_millis(4);

/// A traversal thread that ran for less than this share of a working period competed for its
/// core with other threads; one that ran for more had a core no one else wanted.
pub(super) const PACE_CONTENDED_SHARE: f64 = 0.5;

/// Paces a traversal thread while the clients are busy and it competes with them for CPU:
/// [`PACE_ACTIVE`] of work, then a pause of [`PACE_PAUSE`], always between steps (never
/// holding a shard lock).
///
/// Why `SCHED_IDLE` is not enough: a traversal thread spends most of its running time inside
/// a step, holding a shard lock, so when a client thread wakes and preempts it, it usually
/// keeps that lock until a core next goes idle. The next command for that shard (one in 128)
/// blocks on it, which idles a core, which runs the traversal again: under full load the idle
/// thread still took a sizeable share of the machine. Paced, the clients keep more of their
/// throughput and the save takes longer (docs/benchmarks.md, "Paced traversal").
///
/// Why it also asks whether it competes: a server with busy clients and a spare core (light
/// load, or more cores than the clients use) gives the idle-class thread a whole core and
/// loses nothing to it. The thread's own CPU time tells: over a working period in which it
/// was runnable throughout, it ran for [`PACE_CONTENDED_SHARE`] of the time or more only if no
/// other thread wanted its core. Pacing regardless made a save under a light load take several
/// times as long (docs/benchmarks.md, "Figures behind code decisions").
#[derive(Debug)]
pub(super) struct Pace {
    pub(super) gate: LoadGate,
    /// Start of the current working period: wall clock and this thread's CPU time.
    pub(super) since: (Instant, Duration),
}

impl Pace {
    pub(super) fn new() -> Pace {
        Pace::starting(Instant::now(), thread_cpu_time())
    }

    pub(super) fn starting(now: Instant, cpu: Duration) -> Pace {
        Pace {
            gate: LoadGate::default(),
            since: (now, cpu),
        }
    }

    /// How long to pause now: None until the thread has worked for [`PACE_ACTIVE`] since it
    /// last resumed, while the clients are quiet, and while it has had a core to itself.
    /// `sample` gives the commands served so far and this thread's CPU time; it is called only
    /// once a working period is over (a thread CPU clock is a system call), not at every step.
    pub(super) fn pause(
        &mut self,
        now: Instant,
        sample: impl FnOnce() -> (u64, Duration),
    ) -> Option<Duration> {
        let wall = now.saturating_duration_since(self.since.0);
        if wall < PACE_ACTIVE {
            return None;
        }
        let (served, cpu) = sample();
        let ran = cpu.saturating_sub(self.since.1);
        let busy = self.gate.clients_busy(served, now);
        self.since = (now, cpu);
        let contended = ran.as_secs_f64() < PACE_CONTENDED_SHARE * wall.as_secs_f64();
        (busy && contended).then_some(PACE_PAUSE)
    }

    /// Starts the next working period after a pause.
    pub(super) fn resume(&mut self, now: Instant, cpu: Duration) {
        self.since = (now, cpu);
    }
}

/// The CPU time the calling thread has used.
pub(super) fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_gate_says_busy_only_above_the_rate() {
        let mut gate = LoadGate::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        // The first look only starts the clock, however much was served before.
        assert!(!gate.clients_busy(1_000_000, at(0)));
        // 1,000 commands in 10 ms: 100k a second.
        assert!(gate.clients_busy(1_001_000, at(10)));
        // 50 in 10 ms: 5k a second, below the line.
        assert!(!gate.clients_busy(1_001_050, at(20)));
        // Nothing for a second: idle.
        assert!(!gate.clients_busy(1_001_050, at(1020)));
        // Exactly the line: busy.
        assert!(gate.clients_busy(1_011_050, at(2020)));
        // No time passed: no rate to judge, so not busy.
        assert!(!gate.clients_busy(2_000_000, at(2020)));
    }

    #[test]
    fn pace_pauses_only_when_clients_are_busy_and_compete_for_the_core() {
        let start = Instant::now();
        let at = |us| start + Duration::from_micros(us);
        let cpu = Duration::from_micros;
        let mut pace = Pace::starting(at(0), cpu(0));
        // Within the first working period: never a pause, and nothing is sampled.
        assert_eq!(
            pace.pause(at(10), || unreachable!("sampled mid-period")),
            None
        );
        assert_eq!(pace.pause(at(10), || (0, cpu(10))), None);
        assert_eq!(pace.pause(at(999), || (500_000, cpu(100))), None);
        // After a period the first load sample only starts the clock.
        assert_eq!(pace.pause(at(1_000), || (0, cpu(100))), None);
        // Busy clients (100 commands in 1 ms) and 0.3 ms of CPU in 1 ms: it competes.
        assert_eq!(pace.pause(at(2_000), || (100, cpu(400))), Some(PACE_PAUSE));
        pace.resume(at(6_000), cpu(400));
        // Back at work: no pause until a whole period has passed since resuming.
        assert_eq!(pace.pause(at(6_500), || (1_000, cpu(500))), None);
        // Busy clients, but it ran 0.9 ms of the period: it had a core to itself.
        assert_eq!(pace.pause(at(7_000), || (10_000, cpu(1_300))), None);
        // Quiet clients (1 command over 1 ms) with little CPU: no pause either.
        assert_eq!(pace.pause(at(8_000), || (10_001, cpu(1_400))), None);
        // Quiet for a long stretch: still no pause.
        assert_eq!(pace.pause(at(20_000), || (10_002, cpu(1_500))), None);
        // Busy and contended again.
        assert_eq!(
            pace.pause(at(21_000), || (20_000, cpu(1_600))),
            Some(PACE_PAUSE)
        );
    }

    #[test]
    fn thread_cpu_time_counts_this_threads_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        let deadline = Instant::now() + Duration::from_millis(20);
        while Instant::now() < deadline {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = thread_cpu_time().saturating_sub(before);
        assert!(
            used > Duration::ZERO,
            "no CPU time counted after spinning ({x})"
        );
        assert!(
            used <= Duration::from_secs(5),
            "implausible CPU time {used:?}"
        );
    }
}
