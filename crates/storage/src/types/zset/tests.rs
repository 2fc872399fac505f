//! The sorted set against a `BTreeSet<(score, member)>` model: every operation, ranks, range
//! walks in both directions, range removal and the scan guarantee.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::Bytes;
use proptest::prelude::*;

use super::ZSet;

/// A score with a total order for the model (scores are never NaN; -0 and 0 are equal).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Score) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Score) -> std::cmp::Ordering {
        self.0
            .partial_cmp(&other.0)
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

#[derive(Debug, Default)]
struct Model {
    order: BTreeSet<(Score, Vec<u8>)>,
    scores: BTreeMap<Vec<u8>, f64>,
}

impl Model {
    fn insert(&mut self, member: &[u8], score: f64) -> bool {
        let old = self.scores.insert(member.to_vec(), score);
        if let Some(old) = old {
            self.order.remove(&(Score(old), member.to_vec()));
        }
        self.order.insert((Score(score), member.to_vec()));
        old.is_none()
    }

    fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let old = self.scores.remove(member)?;
        self.order.remove(&(Score(old), member.to_vec()));
        Some(old)
    }

    fn sorted(&self) -> Vec<(Vec<u8>, f64)> {
        self.order.iter().map(|(s, m)| (m.clone(), s.0)).collect()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u16, i8),
    Remove(u16),
    RemoveRanks(u8, u8),
}

/// Members below 40 are few, so inserts and removes hit; the others push a set past the
/// listpack's 128 members. Some are canonical integers, which a listpack stores as such.
fn member(n: u16) -> Vec<u8> {
    match n % 3 {
        0 => format!("{}", n % 40).into_bytes(),
        _ => format!("m{n}").into_bytes(),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop_oneof![0u16..40, 0u16..400], -8i8..8).prop_map(|(m, s)| Op::Insert(m, s)),
        3 => (0u16..40).prop_map(Op::Remove),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::RemoveRanks(a % 50, b % 8)),
    ]
}

fn contents(zset: &ZSet) -> Vec<(Vec<u8>, f64)> {
    zset.iter().map(|(m, s)| (m.to_vec(), s)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn zset_matches_btreeset_model(ops in proptest::collection::vec(op(), 1..300), hint in 0usize..200) {
        let mut zset = ZSet::with_hint(hint, 0);
        let mut model = Model::default();
        // A copy taken halfway (what a snapshot keeps) must not see the later writes.
        let halfway = ops.len() / 2;
        let mut copy = None;
        for (i, op) in ops.into_iter().enumerate() {
            if i == halfway {
                copy = Some((zset.clone(), model.sorted()));
            }
            match op {
                Op::Insert(m, s) => {
                    // Halves, and some scores no packed integer can hold.
                    let score = if s == 7 { 1e300 } else if s == -8 { -0.1 } else { f64::from(s) / 2.0 };
                    prop_assert_eq!(
                        zset.insert(Bytes::from(member(m)), score),
                        model.insert(&member(m), score)
                    );
                }
                Op::Remove(m) => {
                    prop_assert_eq!(zset.remove(&member(m)), model.remove(&member(m)));
                }
                Op::RemoveRanks(start, n) => {
                    let start = usize::from(start);
                    let end = start + usize::from(n);
                    let expected: Vec<_> = model.sorted().into_iter().skip(start).take(end - start).collect();
                    for (m, _) in &expected {
                        model.remove(m);
                    }
                    let removed: Vec<_> = zset.remove_ranks(start.min(zset.len()), end)
                        .into_iter().map(|(m, s)| (m.to_vec(), s)).collect();
                    prop_assert_eq!(removed, expected);
                }
            }
            zset.check_invariants();
            if model.scores.len() > 128 {
                prop_assert_eq!(zset.encoding(), "skiplist");
            }
            let sorted = model.sorted();
            prop_assert_eq!(contents(&zset), sorted.clone());
            prop_assert_eq!(zset.len(), sorted.len());
            prop_assert_eq!(zset.iter().len(), sorted.len());
        }
        let sorted = model.sorted();
        for (rank, (m, score)) in sorted.iter().enumerate() {
            prop_assert_eq!(zset.rank(m), Some(rank));
            prop_assert_eq!(zset.score(m), Some(*score));
            prop_assert_eq!(zset.get_by_rank(rank).map(|(m, s)| (m.to_vec(), s)), Some((m.clone(), *score)));
            let forward: Vec<_> = zset.range(rank, 3, false).map(|(m, s)| (m.to_vec(), s)).collect();
            let expected: Vec<_> = sorted.iter().skip(rank).take(3).cloned().collect();
            prop_assert_eq!(forward, expected);
            let backward: Vec<_> = zset.range(rank, 3, true).map(|(m, s)| (m.to_vec(), s)).collect();
            let expected: Vec<_> = sorted.iter().take(rank + 1).rev().take(3).cloned().collect();
            prop_assert_eq!(backward, expected);
        }
        prop_assert_eq!(zset.get_by_rank(sorted.len()), None);
        for m in 0..400 {
            prop_assert_eq!(zset.score(&member(m)), model.scores.get(&member(m)).copied(), "removed members are gone from the index");
        }
        prop_assert_eq!(zset.rank(b"absent"), None);
        if let Some((copy, at_copy)) = copy {
            copy.check_invariants();
            prop_assert_eq!(contents(&copy), at_copy);
        }
        for half in -9..9 {
            let score = f64::from(half) / 2.0;
            prop_assert_eq!(zset.count_score_below(score, false), sorted.iter().filter(|(_, s)| *s < score).count());
            prop_assert_eq!(zset.count_score_below(score, true), sorted.iter().filter(|(_, s)| *s <= score).count());
        }
    }

    #[test]
    fn scan_visits_every_member_present_throughout(
        members in proptest::collection::btree_set(0u16..500, 1..300),
        churn in proptest::collection::vec(500u16..800, 0..100),
        count in 1usize..20,
    ) {
        let mut zset = ZSet::new();
        for &m in &members {
            zset.insert(Bytes::from(m.to_string()), f64::from(m));
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut churn = churn.into_iter();
        loop {
            cursor = zset.scan(cursor, count, |m, _| { seen.insert(m.to_vec()); });
            if let Some(extra) = churn.next() {
                let extra = Bytes::from(extra.to_string());
                if zset.remove(&extra).is_none() {
                    zset.insert(extra, 0.5);
                }
            }
            if cursor == 0 {
                break;
            }
        }
        for m in &members {
            prop_assert!(seen.contains(m.to_string().as_bytes()));
        }
    }
}

#[test]
fn lex_counts_follow_member_order() {
    let mut zset = ZSet::new();
    for m in ["a", "b", "c", "d"] {
        zset.insert(Bytes::from(m), 0.0);
    }
    assert_eq!(zset.count_member_below(b"b", false), 1);
    assert_eq!(zset.count_member_below(b"b", true), 2);
    assert_eq!(zset.count_member_below(b"bb", true), 2);
    assert_eq!(zset.count_member_below(b"z", false), 4);
}

#[test]
fn negative_zero_equals_zero_and_keeps_its_sign_in_a_skiplist() {
    let mut listpack = ZSet::new();
    listpack.insert(Bytes::from("a"), -0.0);
    assert_eq!(listpack.score(b"a").map(f64::to_bits), Some(0));
    let mut zset = ZSet::with_hint(1, 100);
    zset.insert(Bytes::from("b"), 0.0);
    zset.insert(Bytes::from("a"), -0.0);
    let members: Vec<_> = zset
        .iter()
        .map(|(m, s)| (m.to_bytes(), s.to_bits()))
        .collect();
    assert_eq!(
        members,
        vec![
            (Bytes::from("a"), (-0.0f64).to_bits()),
            (Bytes::from("b"), 0)
        ]
    );
    assert_eq!(zset.rank(b"b"), Some(1));
    assert!(!zset.insert(Bytes::from("a"), 0.0));
    assert_eq!(zset.score(b"a").map(f64::to_bits), Some(0));
    zset.check_invariants();
}

#[test]
fn encoding_converts_once_past_the_listpack_limits() {
    let mut zset = ZSet::new();
    for n in 0..128 {
        zset.insert(Bytes::from(format!("{n}")), 1.0);
    }
    assert_eq!(zset.encoding(), "listpack");
    zset.insert(Bytes::from("one more"), 1.0);
    assert_eq!(zset.encoding(), "skiplist");
    zset.remove_ranks(0, 100);
    assert_eq!(zset.encoding(), "skiplist");
    let mut long = ZSet::new();
    long.insert(Bytes::from(vec![b'x'; 64]), 1.0);
    assert_eq!(long.encoding(), "listpack");
    long.insert(Bytes::from(vec![b'x'; 65]), 1.0);
    assert_eq!(long.encoding(), "skiplist");
    assert_eq!(ZSet::with_hint(129, 1).encoding(), "skiplist");
}

#[test]
fn emptied_set_releases_its_arena() {
    let mut zset = ZSet::new();
    for n in 0..10 {
        zset.insert(Bytes::from(format!("{n}")), f64::from(n));
    }
    assert_eq!(zset.remove_ranks(0, 10).len(), 10);
    assert!(zset.is_empty());
    zset.check_invariants();
    zset.insert(Bytes::from("x"), 1.0);
    assert_eq!(zset.len(), 1);
    zset.check_invariants();
}

/// A copy of a big sorted set (what a snapshot keeps) shares its tree's chunks and its index's
/// parts; a write copies only the few it touches.
#[test]
fn a_write_copies_only_the_parts_it_touches() {
    let mut zset = ZSet::new();
    for n in 0..20_000 {
        zset.insert(Bytes::from(format!("m{n}")), f64::from(n));
    }
    let copy = zset.clone();
    let before = contents(&copy);
    assert!(zset.insert(Bytes::from("new"), 0.5));
    assert!(!zset.insert(Bytes::from("m5"), 99_999.0));
    assert_eq!(zset.remove(b"m7"), Some(7.0));
    assert_eq!(contents(&copy), before);
    zset.check_invariants();
    let (super::Repr::Skiplist(written), super::Repr::Skiplist(kept)) = (&zset.repr, &copy.repr)
    else {
        panic!("both skiplists")
    };
    // Three writes touch a few root-to-leaf paths of the treap (tens of nodes each).
    let (shared, chunks) = written.tree.chunks_shared_with(&kept.tree);
    assert!(chunks >= 2_500, "{chunks} chunks");
    assert!(
        chunks - shared < chunks / 4,
        "{} of {chunks} chunks copied",
        chunks - shared
    );
    // One part each, two more if the insertion split one.
    let (shared, parts) = written.index.parts_shared_with(&kept.index);
    assert!(parts >= 4_000, "{parts} parts");
    assert!(
        parts - shared <= 5,
        "{} of {parts} parts copied",
        parts - shared
    );
}
