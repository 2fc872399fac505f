//! Geo commands end to end, beyond the differential case file (tests/cases/geo.txt): on
//! thousands of random points and queries the stored scores, positions, distances and search
//! results equal redis-server's; RESP3 replies carry coordinates as doubles; GEORADIUS ...
//! STORE wakes a client blocked on the store key; extreme shapes (zero and planet-sized radii,
//! the poles, the antimeridian) answer without a panic.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a panic is a test failure"
)]

use std::time::Duration;

use forkless_tests::resp::{cmd, int};
use forkless_tests::{TestDir, TestServer, redis_tool, start_real_redis_on};

const BIN: &str = env!("CARGO_BIN_EXE_forkless-server");

/// A small deterministic generator, so a failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next()
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() * items.len() as f64) as usize % items.len()]
    }
}

fn query(conn: &mut redis::Connection, args: &[String]) -> redis::Value {
    let mut command = redis::cmd(&args[0]);
    for arg in &args[1..] {
        command.arg(arg);
    }
    command
        .query::<redis::Value>(conn)
        .unwrap_or_else(|error| redis::Value::SimpleString(format!("error: {error}")))
}

#[test]
fn random_points_and_searches_equal_redis() {
    let Some(redis_server) = redis_tool("redis-server") else {
        return;
    };
    let dir = TestDir::new("geo-real-redis");
    let (_redis, mut real) = start_real_redis_on(&redis_server, &dir.0);
    let server = TestServer::start(BIN, &[]);
    let mut ours = server.client();
    let mut rng = Lcg(7);
    let mut mismatches = Vec::new();
    for (set_idx, n_points) in [(0, 100), (1, 1500)] {
        let key = format!("geo{set_idx}");
        let (center_lon, center_lat) = (rng.range(-170.0, 170.0), rng.range(-70.0, 70.0));
        let mut add = vec!["GEOADD".to_owned(), key.clone()];
        for idx in 0..n_points {
            let spread = [0.01, 0.3, 4.0, 40.0][idx % 4];
            let lon = (center_lon + rng.range(-spread, spread)).clamp(-180.0, 180.0);
            let lat = (center_lat + rng.range(-spread, spread)).clamp(-85.0, 85.0);
            add.extend([format!("{lon:.6}"), format!("{lat:.6}"), format!("m{idx}")]);
        }
        let mut queries = vec![
            add,
            vec![
                "ZRANGE".into(),
                key.clone(),
                "0".into(),
                "-1".into(),
                "WITHSCORES".into(),
            ],
        ];
        for _ in 0..150 {
            let lon = format!("{:.5}", center_lon + rng.range(-2.0, 2.0));
            let lat = format!("{:.5}", center_lat + rng.range(-2.0, 2.0));
            let radius = rng.pick(&["0", "1", "50", "300", "3000"]).to_owned();
            let unit = rng.pick(&["m", "km", "mi", "ft"]).to_owned();
            let member = format!("m{}", (rng.next() * n_points as f64) as usize);
            let order = rng.pick(&["ASC", "DESC"]).to_owned();
            let count = format!("{}", 1 + (rng.next() * 30.0) as usize);
            let words = |list: &[&str]| {
                list.iter()
                    .map(|word| (*word).to_owned())
                    .collect::<Vec<_>>()
            };
            queries.push(words(&[
                "GEORADIUS",
                &key,
                &lon,
                &lat,
                &radius,
                &unit,
                "WITHDIST",
                "WITHHASH",
                "WITHCOORD",
                &order,
                "COUNT",
                &count,
            ]));
            queries.push(words(&[
                "GEORADIUSBYMEMBER",
                &key,
                &member,
                &radius,
                &unit,
                "WITHDIST",
                &order,
            ]));
            queries.push(words(&[
                "GEOSEARCH",
                &key,
                "FROMLONLAT",
                &lon,
                &lat,
                "BYBOX",
                &radius,
                &radius,
                &unit,
                "WITHDIST",
                &order,
            ]));
            queries.push(words(&[
                "GEOSEARCHSTORE",
                "dst",
                &key,
                "FROMMEMBER",
                &member,
                "BYRADIUS",
                &radius,
                &unit,
                "STOREDIST",
                &order,
                "COUNT",
                &count,
            ]));
            queries.push(words(&["ZRANGE", "dst", "0", "-1", "WITHSCORES"]));
            queries.push(words(&["GEODIST", &key, &member, "m0", &unit]));
            queries.push(words(&["GEOPOS", &key, &member, "nosuch"]));
            queries.push(words(&["GEOHASH", &key, &member, "nosuch"]));
        }
        for args in &queries {
            let theirs = query(&mut real, args);
            let mine = query(&mut ours, args);
            if theirs != mine {
                mismatches.push(format!(
                    "{args:?}\n  redis:    {theirs:?}\n  forkless: {mine:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first: {}",
        mismatches.len(),
        mismatches.first().unwrap()
    );
}

#[test]
fn resp3_coordinates_are_doubles() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert!(cmd(&mut conn, "HELLO 3").starts_with('%'));
    assert_eq!(
        cmd(&mut conn, "GEOADD Sicily 13.361389 38.115556 Palermo"),
        int(1)
    );
    assert_eq!(
        cmd(&mut conn, "GEOPOS Sicily Palermo nosuch"),
        "*2\r\n*2\r\n,13.36138933897018433\r\n,38.11555639549629859\r\n_\r\n"
    );
    assert_eq!(
        cmd(
            &mut conn,
            "GEOSEARCH Sicily FROMLONLAT 13 38 BYRADIUS 100 km WITHDIST"
        ),
        "*1\r\n*2\r\n$7\r\nPalermo\r\n$7\r\n34.1601\r\n"
    );
}

#[test]
fn georadius_store_wakes_a_blocked_client() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(
        cmd(
            &mut conn,
            "GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania"
        ),
        int(2)
    );
    let mut blocked = server.raw();
    blocked.send_command(&[b"BZPOPMIN", b"dst", b"10"]);
    // Wait until the server counts the client as blocked before storing.
    let mut watcher = server.raw();
    assert!(forkless_tests::wait_until(Duration::from_secs(10), || {
        cmd(&mut watcher, "INFO clients").contains("blocked_clients:1")
    }));
    assert_eq!(
        cmd(&mut conn, "GEORADIUS Sicily 15 37 200 km STOREDIST dst ASC"),
        int(2)
    );
    let reply = String::from_utf8_lossy(&blocked.read_reply()).into_owned();
    assert!(
        reply.starts_with("*3\r\n$3\r\ndst\r\n$7\r\nCatania\r\n"),
        "{reply}"
    );
}

#[test]
fn extreme_shapes_answer() {
    let server = TestServer::start(BIN, &[]);
    let mut conn = server.raw();
    assert_eq!(
        cmd(
            &mut conn,
            "GEOADD edges -180 -85.05112878 a 180 85.05112878 b 0 0 c 179.999 10 d -179.999 10 e"
        ),
        int(5)
    );
    for line in [
        "GEORADIUS edges 0 0 0 m",
        "GEORADIUS edges 180 85.05112878 1 m",
        "GEORADIUS edges -180 -85.05112878 40000 km",
        "GEORADIUS edges 179.9999 10 500 km ASC",
        "GEOSEARCH edges FROMLONLAT 0 0 BYBOX 0 0 m",
        "GEOSEARCH edges FROMLONLAT 0 0 BYBOX 100000 100000 km COUNT 2 ANY",
        "GEOSEARCH edges FROMLONLAT 0 85 BYRADIUS 1e300 km",
        "GEOSEARCH edges FROMLONLAT 0 -85 BYRADIUS inf km",
        "GEODIST edges a b",
        "GEOHASH edges a b c d e",
    ] {
        let reply = cmd(&mut conn, line);
        assert!(
            reply.starts_with('*') || reply.starts_with('$'),
            "{line}: {reply}"
        );
    }
    // Scores that GEOADD never writes still decode to some position.
    assert_eq!(cmd(&mut conn, "ZADD edges -5 neg 1e300 huge"), int(2));
    for line in [
        "GEOPOS edges neg huge",
        "GEOHASH edges neg huge",
        "GEODIST edges neg huge",
    ] {
        let reply = cmd(&mut conn, line);
        assert!(
            reply.starts_with('*') || reply.starts_with('$'),
            "{line}: {reply}"
        );
    }
    assert_eq!(cmd(&mut conn, "PING"), "+PONG\r\n");
}
