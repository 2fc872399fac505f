//! The connections waiting for their effects to reach the AOF, by effect number.
//!
//! Whoever publishes a number (a leading connection after its write, the writer thread) wakes
//! exactly the waiters that number answers, and when it lets go of the file also the first of
//! those still waiting, to lead the next write (`writer.rs`). Waking every waiter on every
//! write (a `Notify`) cost more than the write itself under load: most of them only went back
//! to sleep.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;

use crate::server::lock;

/// A waiter's place: the number it waits for, then an id that tells apart waiters of one
/// number.
pub(crate) type Key = (u64, u64);

/// The waiting connections of one writer.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    /// Ordered by number, so the waiters a number answers are a prefix. A std mutex: each
    /// operation is a few map steps, never an await.
    waiting: Mutex<BTreeMap<Key, Waker>>,
    next_id: AtomicU64,
}

impl Waiters {
    /// A key for a new waiter on `seq`.
    pub(crate) fn key(&self, seq: u64) -> Key {
        (seq, self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Registers (or refreshes) the waiter `key` with `waker`.
    pub(crate) fn register(&self, key: Key, waker: &Waker) {
        let mut waiting = lock(&self.waiting);
        match waiting.get_mut(&key) {
            Some(held) => held.clone_from(waker),
            None => {
                waiting.insert(key, waker.clone());
            }
        }
    }

    /// Removes the waiter `key`. Returns true if and only if it was registered.
    pub(crate) fn remove(&self, key: Key) -> bool {
        lock(&self.waiting).remove(&key).is_some()
    }

    /// Wakes (and removes) every waiter on a number up to `durable`, and, if `next_leader`,
    /// the first one still waiting after them, so that it leads the next write. Takes them a
    /// few at a time into an array: no allocation, and each waker runs outside the lock (it
    /// may run its task's scheduling code).
    pub(crate) fn wake_up_to(&self, durable: u64, next_leader: bool) {
        const AT_ONCE: usize = 16;
        let mut leader_wanted = next_leader;
        loop {
            let mut woken: [Option<Waker>; AT_ONCE] = Default::default();
            let mut taken = 0;
            {
                let mut waiting = lock(&self.waiting);
                while taken < AT_ONCE {
                    let Some(first) = waiting.first_entry() else {
                        break;
                    };
                    let answered = first.key().0 <= durable;
                    if !answered && !leader_wanted {
                        break;
                    }
                    if let Some(slot) = woken.get_mut(taken) {
                        *slot = Some(first.remove());
                    }
                    taken += 1;
                    if !answered {
                        // The next leader: the waiters after it are not answered either.
                        leader_wanted = false;
                        break;
                    }
                }
            }
            for waker in woken.iter_mut().filter_map(Option::take) {
                waker.wake();
            }
            if taken < AT_ONCE {
                return;
            }
        }
    }

    /// Wakes (and removes) every waiter.
    pub(crate) fn wake_all(&self) {
        let woken = std::mem::take(&mut *lock(&self.waiting));
        for waker in woken.into_values() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&count), Waker::from(count))
    }

    #[test]
    fn a_number_wakes_the_waiters_it_answers_and_one_next_leader() {
        let waiters = Waiters::default();
        let counts: Vec<_> = [3, 5, 5, 9, 12]
            .into_iter()
            .map(|seq| {
                let (count, waker) = counter();
                waiters.register(waiters.key(seq), &waker);
                count
            })
            .collect();
        waiters.wake_up_to(5, true);
        let woken: Vec<usize> = counts
            .iter()
            .map(|count| count.0.load(Ordering::Relaxed))
            .collect();
        // 3, 5, 5 answered; 9 leads next; 12 sleeps on.
        assert_eq!(woken, [1, 1, 1, 1, 0]);
        waiters.wake_up_to(11, false);
        assert_eq!(counts[4].0.load(Ordering::Relaxed), 0);
        waiters.wake_all();
        assert_eq!(counts[4].0.load(Ordering::Relaxed), 1);
        assert!(lock(&waiters.waiting).is_empty());
    }

    #[test]
    fn registering_again_refreshes_and_remove_forgets() {
        let waiters = Waiters::default();
        let key = waiters.key(7);
        let (first, waker) = counter();
        waiters.register(key, &waker);
        let (second, waker) = counter();
        waiters.register(key, &waker);
        assert!(waiters.remove(key));
        assert!(!waiters.remove(key));
        waiters.wake_all();
        assert_eq!(first.0.load(Ordering::Relaxed), 0);
        assert_eq!(second.0.load(Ordering::Relaxed), 0);
        let (third, waker) = counter();
        waiters.register(key, &waker);
        waiters.register(key, &waker);
        waiters.wake_up_to(7, false);
        assert_eq!(third.0.load(Ordering::Relaxed), 1);
    }
}
