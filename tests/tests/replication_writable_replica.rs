//! A writable replica (`replica-read-only no`) expires the keys its own clients wrote with a
//! TTL, as Redis 7.0's `expireSlaveKeys`, while the keys that came from the primary still wait
//! for the primary's DEL. Two forkless servers, no redis-server needed.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use forkless_tests::replication::{SYNC_TIMEOUT, info, wait_synced};
use forkless_tests::{TestServer, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

fn dbsize(conn: &mut redis::Connection) -> i64 {
    redis::cmd("DBSIZE").query(conn).unwrap()
}

fn pair() -> (TestServer, TestServer) {
    let primary = TestServer::start(BIN, &["--enable-debug-command", "yes"]);
    let replica = TestServer::start(
        BIN,
        &["--replicaof", "127.0.0.1", &primary.port().to_string()],
    );
    (primary, replica)
}

#[test]
fn a_writable_replica_expires_its_own_keys_and_waits_for_the_primarys() {
    let (primary, replica) = pair();
    let mut theirs = primary.client();
    let mut ours = replica.client();
    wait_synced(&mut theirs, &mut ours);
    // The primary keeps its expired key until something reads it: no DEL comes meanwhile.
    let _: String = redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(0)
        .query(&mut theirs)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("from-primary")
        .arg("v")
        .arg("PX")
        .arg(50)
        .query(&mut theirs)
        .unwrap();
    wait_synced(&mut theirs, &mut ours);

    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("replica-read-only")
        .arg("no")
        .query(&mut ours)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("local-px")
        .arg("v")
        .arg("PX")
        .arg(50)
        .query(&mut ours)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("local-expire")
        .arg("v")
        .query(&mut ours)
        .unwrap();
    let _: i64 = redis::cmd("PEXPIRE")
        .arg("local-expire")
        .arg(50)
        .query(&mut ours)
        .unwrap();
    // A TTL taken away again: the key stays.
    let () = redis::cmd("SET")
        .arg("local-persisted")
        .arg("v")
        .arg("PX")
        .arg(50)
        .query(&mut ours)
        .unwrap();
    let _: i64 = redis::cmd("PERSIST")
        .arg("local-persisted")
        .query(&mut ours)
        .unwrap();
    // Another database, through a transaction.
    let () = redis::cmd("SELECT").arg(5).query(&mut ours).unwrap();
    let _: Vec<redis::Value> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("local-in-exec")
        .arg("v")
        .arg("PX")
        .arg(50)
        .query(&mut ours)
        .unwrap();
    assert_eq!(dbsize(&mut ours), 1);
    assert!(
        wait_until(SYNC_TIMEOUT, || dbsize(&mut ours) == 0),
        "the replica kept a key its client wrote with a TTL in db 5"
    );
    let () = redis::cmd("SELECT").arg(0).query(&mut ours).unwrap();
    assert!(
        wait_until(SYNC_TIMEOUT, || dbsize(&mut ours) == 2),
        "the replica kept a key its client wrote with a TTL in db 0"
    );
    let exists: i64 = redis::cmd("EXISTS")
        .arg("local-persisted")
        .query(&mut ours)
        .unwrap();
    assert_eq!(exists, 1, "a key without a TTL any more was expired");
    assert!(
        info(&mut ours, "stats", "expired_keys")
            .parse::<u64>()
            .unwrap()
            >= 3
    );
    // The primary's key is still there (reading as missing), until the primary's DEL.
    let value: Option<String> = redis::cmd("GET")
        .arg("from-primary")
        .query(&mut ours)
        .unwrap();
    assert_eq!(value, None);
    let value: Option<String> = redis::cmd("GET")
        .arg("from-primary")
        .query(&mut theirs)
        .unwrap();
    assert_eq!(value, None);
    wait_synced(&mut theirs, &mut ours);
    assert_eq!(dbsize(&mut ours), 1);
}

/// PFCOUNT reads: on a replica an expired HyperLogLog counts as empty and stays until the
/// primary's DEL, though PFCOUNT may write its cached cardinality (Redis's `lookupKeyRead`).
#[test]
fn pfcount_on_a_replica_leaves_an_expired_key_to_the_primary() {
    let (primary, replica) = pair();
    let mut theirs = primary.client();
    let mut ours = replica.client();
    wait_synced(&mut theirs, &mut ours);
    let _: String = redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(0)
        .query(&mut theirs)
        .unwrap();
    let _: i64 = redis::cmd("PFADD")
        .arg("hll")
        .arg(&["a", "b", "c"])
        .query(&mut theirs)
        .unwrap();
    let _: i64 = redis::cmd("PEXPIRE")
        .arg("hll")
        .arg(10)
        .query(&mut theirs)
        .unwrap();
    wait_synced(&mut theirs, &mut ours);
    assert!(wait_until(SYNC_TIMEOUT, || {
        redis::cmd("EXISTS")
            .arg("hll")
            .query::<i64>(&mut ours)
            .unwrap()
            == 0
    }));
    let count: i64 = redis::cmd("PFCOUNT").arg("hll").query(&mut ours).unwrap();
    assert_eq!(count, 0);
    assert_eq!(
        dbsize(&mut ours),
        1,
        "PFCOUNT removed the primary's key on a replica"
    );
}
