//! Geo commands: GEOADD GEODIST GEOHASH GEOPOS GEORADIUS GEORADIUS_RO GEORADIUSBYMEMBER
//! GEORADIUSBYMEMBER_RO GEOSEARCH GEOSEARCHSTORE.
//!
//! A geo set is a sorted set whose scores are 52-bit geohashes (`geo/hash.rs`), exactly the
//! scores Redis stores, so geo sets move between the servers like any sorted set. GEOADD is
//! ZADD with the positions turned into scores (as Redis rewrites it). A search reads the nine
//! cells around its centre in Redis's order, keeps the members inside the shape, and sorts,
//! counts and stores them as `georadiusGeneric` does; its checks come in Redis's order too
//! (the key's type first, then the arguments left to right, then the combinations).

mod hash;

use bytes::Bytes;
use forkless_storage::Value;
use forkless_storage::types::zset::ZSet;

use self::hash::{Cell, Search, Shape};
use super::meta::{Gate, KeySpec, flags};
use super::zset::parse::parse_score;
use super::{Command, Ctx, eq_ignore_case, parse_i64, reply};

#[rustfmt::skip]
pub(crate) const COMMANDS: &[Command] = &[
    Command { name: "geoadd", arity: -5, flags: flags!(WRITE, DENYOOM), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "geo", "slow"], summary: "Add one or more geospatial items in the geospatial index represented using a sorted set", since: "3.2.0", group: "geo", handler: geoadd },
    Command { name: "geodist", arity: -4, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "geo", "slow"], summary: "Returns the distance between two members of a geospatial index", since: "3.2.0", group: "geo", handler: geodist },
    Command { name: "geohash", arity: -2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "geo", "slow"], summary: "Returns members of a geospatial index as standard geohash strings", since: "3.2.0", group: "geo", handler: geohash },
    Command { name: "geopos", arity: -2, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "geo", "slow"], summary: "Returns longitude and latitude of members of a geospatial index", since: "3.2.0", group: "geo", handler: geopos },
    Command { name: "georadius", arity: -6, flags: flags!(WRITE, DENYOOM, MOVABLEKEYS), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "geo", "slow"], summary: "Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a point", since: "3.2.0", group: "geo", handler: georadius },
    Command { name: "georadius_ro", arity: -6, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "geo", "slow"], summary: "A read-only variant for GEORADIUS", since: "3.2.10", group: "geo", handler: georadius_ro },
    Command { name: "georadiusbymember", arity: -5, flags: flags!(WRITE, DENYOOM, MOVABLEKEYS), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["write", "geo", "slow"], summary: "Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a member", since: "3.2.0", group: "geo", handler: georadiusbymember },
    Command { name: "georadiusbymember_ro", arity: -5, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "geo", "slow"], summary: "A read-only variant for GEORADIUSBYMEMBER", since: "3.2.10", group: "geo", handler: georadiusbymember_ro },
    Command { name: "geosearch", arity: -7, flags: flags!(READONLY), keys: KeySpec::FIRST, gate: Gate::Shared, categories: &["read", "geo", "slow"], summary: "Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle.", since: "6.2.0", group: "geo", handler: geosearch },
    Command { name: "geosearchstore", arity: -8, flags: flags!(WRITE, DENYOOM), keys: KeySpec::new(1, 2, 1), gate: Gate::Shared, categories: &["write", "geo", "slow"], summary: "Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle, and store the result in another key.", since: "6.2.0", group: "geo", handler: geosearchstore },
];

const UNSUPPORTED_UNIT: &str = "ERR unsupported unit provided. please use M, KM, FT, MI";
const BAD_MEMBER: &str = "ERR could not decode requested zset member";

/// An error reply's text, owned because some of Redis's geo errors quote arguments.
type GeoReply<T> = Result<T, String>;

/// Redis's `extractUnitOrReply`: meters per unit.
fn parse_unit(arg: &[u8]) -> GeoReply<f64> {
    match arg.to_ascii_lowercase().as_slice() {
        b"m" => Ok(1.0),
        b"km" => Ok(1000.0),
        b"ft" => Ok(0.3048),
        b"mi" => Ok(1609.34),
        _ => Err(UNSUPPORTED_UNIT.to_owned()),
    }
}

/// Redis's `extractLongLatOrReply`: a longitude and a latitude within the WGS-84 limits.
fn parse_lon_lat(lon: &[u8], lat: &[u8]) -> GeoReply<(f64, f64)> {
    let lon = parse_score(lon).ok_or(reply::NOT_FLOAT)?;
    let lat = parse_score(lat).ok_or(reply::NOT_FLOAT)?;
    if !(hash::LONG_MIN..=hash::LONG_MAX).contains(&lon)
        || !(hash::LAT_MIN..=hash::LAT_MAX).contains(&lat)
    {
        return Err(format!(
            "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
        ));
    }
    Ok((lon, lat))
}

/// Redis's `extractDistanceOrReply`: a non-negative radius and its unit's meters.
fn parse_distance(radius: &[u8], unit: &[u8]) -> GeoReply<(f64, f64)> {
    let radius = parse_score(radius).ok_or("ERR need numeric radius")?;
    if radius < 0.0 {
        return Err("ERR radius cannot be negative".to_owned());
    }
    Ok((radius, parse_unit(unit)?))
}

/// Redis's `extractBoxOrReply`: width, height and the unit's meters.
fn parse_box(width: &[u8], height: &[u8], unit: &[u8]) -> GeoReply<(f64, f64, f64)> {
    let width = parse_score(width).ok_or("ERR need numeric width")?;
    let height = parse_score(height).ok_or("ERR need numeric height")?;
    if height < 0.0 || width < 0.0 {
        return Err("ERR height or width cannot be negative".to_owned());
    }
    Ok((width, height, parse_unit(unit)?))
}

/// A distance as Redis replies it (`addReplyDoubleDistance`): four decimals, rounded half to
/// even from the value times 10^4 (`llrint`).
fn distance_text(meters: f64) -> String {
    let scaled = (meters * 10_000.0).round_ties_even() as i64;
    let sign = if scaled < 0 { "-" } else { "" };
    let magnitude = scaled.unsigned_abs();
    format!("{sign}{}.{:04}", magnitude / 10_000, magnitude % 10_000)
}

/// A coordinate as Redis replies it (`addReplyHumanLongDouble`): `%.17Lf` of the exact value,
/// trailing zeros and a bare point removed, `-0` as `0`.
fn coordinate_text(value: f64) -> String {
    let mut text = format!("{value:.17}");
    if text.contains('.') {
        let trimmed = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(trimmed);
    }
    if text == "-0" { "0".to_owned() } else { text }
}

fn reply_coordinates(ctx: &mut Ctx<'_>, (longitude, latitude): (f64, f64)) {
    ctx.out.array_len(2);
    ctx.out.double_text(coordinate_text(longitude).as_bytes());
    ctx.out.double_text(coordinate_text(latitude).as_bytes());
}

/// The sorted set at `key` for reading, counting a hit or miss: None if absent, WRONGTYPE for
/// another type. The set is shared (`Arc`), so the guard is not held while replying.
fn read_zset(ctx: &Ctx<'_>, key: &[u8]) -> Result<Option<std::sync::Arc<ZSet>>, &'static str> {
    let value = {
        let guard = ctx.db().read(&[key], ctx.now_ms);
        guard.get(key).map(|entry| entry.value().clone())
    };
    ctx.hit_or_miss(value.is_some(), key);
    match value {
        None => Ok(None),
        Some(Value::ZSet(zset)) => Ok(Some(zset)),
        Some(_) => Err(reply::WRONGTYPE),
    }
}

// ---------------------------------------------------------------------------------------------
// GEOADD, GEODIST, GEOHASH, GEOPOS.

fn geoadd(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let (mut nx, mut xx) = (false, false);
    let mut first = 2;
    while let Some(option) = argv.get(first) {
        if eq_ignore_case(option, "nx") {
            nx = true;
        } else if eq_ignore_case(option, "xx") {
            xx = true;
        } else if !eq_ignore_case(option, "ch") {
            break;
        }
        first += 1;
    }
    let triples = argv.get(first..).unwrap_or_default();
    if triples.len() % 3 != 0 || (xx && nx) {
        return ctx.out.error(reply::SYNTAX);
    }
    // ZADD key [options...] score member ..., with each position turned into its score.
    let mut zadd_argv: Vec<Bytes> = Vec::with_capacity(first + triples.len() / 3 * 2);
    zadd_argv.push(Bytes::from_static(b"zadd"));
    zadd_argv.extend(argv.iter().take(first).skip(1).cloned());
    for triple in triples.chunks_exact(3) {
        let [lon, lat, member] = triple else { continue };
        let score = match parse_lon_lat(lon, lat).and_then(|(lon, lat)| {
            hash::score_of(lon, lat).ok_or_else(|| reply::NOT_FLOAT.to_owned())
        }) {
            Ok(score) => score,
            Err(msg) => return ctx.out.error(&msg),
        };
        zadd_argv.push(Bytes::from(score.to_string()));
        zadd_argv.push(member.clone());
    }
    super::zset::zadd(ctx, &zadd_argv);
}

fn geodist(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let to_meters = match argv {
        [_, _, _, _] => 1.0,
        [_, _, _, _, unit] => match parse_unit(unit) {
            Ok(meters) => meters,
            Err(msg) => return ctx.out.error(&msg),
        },
        _ => return ctx.out.error(reply::SYNTAX),
    };
    let (Some(key), Some(first), Some(second)) = (argv.get(1), argv.get(2), argv.get(3)) else {
        return;
    };
    let zset = match read_zset(ctx, key) {
        Ok(Some(zset)) => zset,
        Ok(None) => return ctx.out.null(),
        Err(msg) => return ctx.out.error(msg),
    };
    let positions = zset
        .score(first)
        .and_then(hash::decode_score)
        .zip(zset.score(second).and_then(hash::decode_score));
    match positions {
        Some(((lon1, lat1), (lon2, lat2))) => {
            let meters = hash::distance(lon1, lat1, lon2, lat2);
            ctx.out.bulk(distance_text(meters / to_meters).as_bytes());
        }
        None => ctx.out.null(),
    }
}

fn geohash(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(key) = argv.get(1) else { return };
    let zset = match read_zset(ctx, key) {
        Ok(zset) => zset,
        Err(msg) => return ctx.out.error(msg),
    };
    let members = argv.get(2..).unwrap_or_default();
    ctx.out.array_len(members.len());
    for member in members {
        let text = zset
            .as_ref()
            .and_then(|zset| zset.score(member))
            .and_then(hash::standard_geohash);
        match text {
            Some(text) => ctx.out.bulk(&text),
            None => ctx.out.null(),
        }
    }
}

fn geopos(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let Some(key) = argv.get(1) else { return };
    let zset = match read_zset(ctx, key) {
        Ok(zset) => zset,
        Err(msg) => return ctx.out.error(msg),
    };
    let members = argv.get(2..).unwrap_or_default();
    ctx.out.array_len(members.len());
    for member in members {
        let position = zset
            .as_ref()
            .and_then(|zset| zset.score(member))
            .and_then(hash::decode_score);
        match position {
            Some(position) => reply_coordinates(ctx, position),
            None => ctx.out.null_array(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The searches.

/// Which search command runs (Redis's `georadiusGeneric` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// GEORADIUS, or GEORADIUS_RO with `read_only`.
    Radius { read_only: bool },
    /// GEORADIUSBYMEMBER, or its _RO form.
    ByMember { read_only: bool },
    /// GEOSEARCH.
    Search,
    /// GEOSEARCHSTORE.
    SearchStore,
}

impl Kind {
    fn is_search(self) -> bool {
        matches!(self, Kind::Search | Kind::SearchStore)
    }

    fn accepts_store_key(self) -> bool {
        matches!(
            self,
            Kind::Radius { read_only: false } | Kind::ByMember { read_only: false }
        )
    }

    /// The argument index of the source key.
    fn source_index(self) -> usize {
        if self == Kind::SearchStore { 2 } else { 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// A parsed search: what to look for and how to answer.
#[derive(Debug)]
struct Plan {
    /// None only when the source key is missing and the centre is a member of it.
    search: Option<Search>,
    with_dist: bool,
    with_hash: bool,
    with_coord: bool,
    sort: Sort,
    any: bool,
    /// 0: no limit.
    count: usize,
    /// The key to store the result in, and whether the scores are distances.
    store: Option<(Bytes, bool)>,
}

/// Parses a search command's arguments in Redis's order. `zset` is the source (None when the
/// key is missing: a member centre is then not looked up).
fn parse_search(argv: &[Bytes], kind: Kind, zset: Option<&ZSet>) -> GeoReply<Plan> {
    let arg = |idx: usize| argv.get(idx).map_or(&[][..], |arg| &arg[..]);
    let member_position = |member: &[u8]| {
        zset.and_then(|zset| zset.score(member))
            .and_then(hash::decode_score)
            .ok_or_else(|| BAD_MEMBER.to_owned())
    };
    let mut center = None;
    let mut shape = None;
    let mut conversion = 1.0;
    let mut store = None;
    let base = match kind {
        Kind::Radius { .. } => {
            center = Some(parse_lon_lat(arg(2), arg(3))?);
            let (radius, meters) = parse_distance(arg(4), arg(5))?;
            shape = Some(Shape::Circle { radius });
            conversion = meters;
            6
        }
        Kind::ByMember { .. } if zset.is_none() => 5,
        Kind::ByMember { .. } => {
            center = Some(member_position(arg(2))?);
            let (radius, meters) = parse_distance(arg(3), arg(4))?;
            shape = Some(Shape::Circle { radius });
            conversion = meters;
            5
        }
        Kind::Search => 2,
        Kind::SearchStore => {
            store = Some((argv.get(1).cloned().unwrap_or_default(), false));
            3
        }
    };

    let mut plan = Plan {
        search: None,
        with_dist: false,
        with_hash: false,
        with_coord: false,
        sort: Sort::None,
        any: false,
        count: 0,
        store: None,
    };
    let (mut from_member, mut from_lon_lat, mut by_radius, mut by_box) =
        (false, false, false, false);
    let options = argv.get(base..).unwrap_or_default();
    let remaining = options.len();
    let mut i = 0;
    while let Some(option) = options.get(i) {
        let word = option.to_ascii_lowercase();
        let at = |offset: usize| arg(base + i + offset);
        match word.as_slice() {
            b"withdist" => plan.with_dist = true,
            b"withhash" => plan.with_hash = true,
            b"withcoord" => plan.with_coord = true,
            b"any" => plan.any = true,
            b"asc" => plan.sort = Sort::Asc,
            b"desc" => plan.sort = Sort::Desc,
            b"count" if i + 1 < remaining => {
                let count = parse_i64(at(1)).ok_or(reply::NOT_INTEGER)?;
                if count <= 0 {
                    return Err("ERR COUNT must be > 0".to_owned());
                }
                plan.count = usize::try_from(count).unwrap_or(usize::MAX);
                i += 1;
            }
            b"store" | b"storedist" if i + 1 < remaining && kind.accepts_store_key() => {
                store = Some((Bytes::copy_from_slice(at(1)), word == b"storedist"));
                i += 1;
            }
            b"storedist" if kind == Kind::SearchStore => {
                if let Some((_, dist)) = store.as_mut() {
                    *dist = true;
                }
            }
            b"frommember" if i + 1 < remaining && kind.is_search() && !from_lon_lat => {
                if zset.is_some() {
                    center = Some(member_position(at(1))?);
                }
                from_member = true;
                i += 1;
            }
            b"fromlonlat" if i + 2 < remaining && kind.is_search() && !from_member => {
                center = Some(parse_lon_lat(at(1), at(2))?);
                from_lon_lat = true;
                i += 2;
            }
            b"byradius" if i + 2 < remaining && kind.is_search() && !by_box => {
                let (radius, meters) = parse_distance(at(1), at(2))?;
                shape = Some(Shape::Circle { radius });
                conversion = meters;
                by_radius = true;
                i += 2;
            }
            b"bybox" if i + 3 < remaining && kind.is_search() && !by_radius => {
                let (width, height, meters) = parse_box(at(1), at(2), at(3))?;
                shape = Some(Shape::Box { width, height });
                conversion = meters;
                by_box = true;
                i += 3;
            }
            _ => return Err(reply::SYNTAX.to_owned()),
        }
        i += 1;
    }

    if store.is_some() && (plan.with_dist || plan.with_hash || plan.with_coord) {
        let what = if kind == Kind::SearchStore {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        ));
    }
    let name = String::from_utf8_lossy(arg(0));
    if kind.is_search() && !(from_member || from_lon_lat) {
        return Err(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        ));
    }
    if kind.is_search() && !(by_radius || by_box) {
        return Err(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        ));
    }
    if plan.any && plan.count == 0 {
        return Err("ERR the ANY argument requires COUNT argument".to_owned());
    }
    plan.store = store;
    plan.search = center.zip(shape).map(|(center, shape)| Search {
        center,
        shape,
        conversion,
    });
    Ok(plan)
}

/// One member found by a search.
#[derive(Debug)]
struct Found {
    member: Bytes,
    position: (f64, f64),
    /// Meters from the centre until the reply, then in the search's unit.
    dist: f64,
    score: f64,
}

/// Redis's `membersOfAllNeighbors`: the members inside the search's shape, cell by cell in
/// Redis's order, each cell in score order; with `limit` (COUNT ANY) it stops once it has that
/// many.
fn find_members(zset: &ZSet, search: &Search, limit: usize) -> Vec<Found> {
    let cells = hash::search_cells(search);
    let mut found = Vec::new();
    let mut last_processed: Option<Cell> = None;
    let full = |found: &Vec<Found>| !found.is_empty() && limit != 0 && found.len() >= limit;
    for (idx, cell) in cells.into_iter().enumerate() {
        if cell == Cell::default() {
            continue;
        }
        // Huge radii make neighbours coincide; Redis skips a cell equal to the one it read
        // last (never comparing with the centre's cell, which it reads first).
        if last_processed == Some(cell) {
            continue;
        }
        if full(&found) {
            break;
        }
        let (min, max) = hash::score_range(cell);
        let first = zset.count_score_below(min, false);
        for (member, score) in zset.range(first, usize::MAX, false) {
            if score >= max {
                break;
            }
            if let Some(position) = hash::decode_score(score) {
                if let Some(dist) = hash::within(search, position.0, position.1) {
                    found.push(Found {
                        member: Bytes::copy_from_slice(&member),
                        position,
                        dist,
                        score,
                    });
                }
            }
            if full(&found) {
                break;
            }
        }
        // Redis's `last_processed` is an index where 0 means "none", so the centre's cell
        // (index 0) never counts as the last one read.
        last_processed = (idx != 0).then_some(cell);
    }
    found
}

fn georadius(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    search_command(ctx, argv, Kind::Radius { read_only: false });
}

fn georadius_ro(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    search_command(ctx, argv, Kind::Radius { read_only: true });
}

fn georadiusbymember(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    search_command(ctx, argv, Kind::ByMember { read_only: false });
}

fn georadiusbymember_ro(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    search_command(ctx, argv, Kind::ByMember { read_only: true });
}

fn geosearch(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    search_command(ctx, argv, Kind::Search);
}

fn geosearchstore(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    search_command(ctx, argv, Kind::SearchStore);
}

/// Redis's `georadiusGeneric`.
fn search_command(ctx: &mut Ctx<'_>, argv: &[Bytes], kind: Kind) {
    let Some(source) = argv.get(kind.source_index()) else {
        return;
    };
    // The key to store in is known only once the arguments are parsed, and they are parsed
    // against the source set (a member centre). So parse once without the set to learn the
    // store key, lock both keys together, and parse again with the set under the lock: an
    // argument error in the first pass is also one in the second.
    let store_key = parse_search(argv, kind, None)
        .ok()
        .and_then(|plan| plan.store)
        .map(|(key, _)| key);
    let db = ctx.db();
    let mut keys: Vec<&[u8]> = vec![source];
    if let Some(store) = &store_key {
        keys.push(store);
    }
    let mut write = store_key.as_ref().map(|_| db.write(&keys, ctx.now_ms));
    let read = match write {
        Some(_) => None,
        None => Some(db.read(&keys, ctx.now_ms)),
    };
    let value = match (&mut write, &read) {
        (Some(guard), _) => guard.get(source).map(|entry| entry.value().clone()),
        (None, Some(guard)) => guard.get(source).map(|entry| entry.value().clone()),
        (None, None) => None,
    };
    ctx.hit_or_miss(value.is_some(), source);
    let zset = match value {
        None => None,
        Some(Value::ZSet(zset)) => Some(zset),
        Some(_) => return ctx.out.error(reply::WRONGTYPE),
    };
    let plan = match parse_search(argv, kind, zset.as_deref()) {
        Ok(plan) => plan,
        Err(msg) => return ctx.out.error(&msg),
    };
    drop(read);
    let (Some(zset), Some(search)) = (zset, plan.search) else {
        // No source set: STORE deletes its key and answers 0, otherwise an empty array.
        if let (Some((store, _)), Some(guard)) = (&plan.store, write.as_mut()) {
            guard.remove(store);
            drop(write);
            return ctx.out.int(0);
        }
        return ctx.out.array_len(0);
    };

    let mut sort = plan.sort;
    if plan.count != 0 && sort == Sort::None && !plan.any {
        sort = Sort::Asc;
    }
    let limit = if plan.any { plan.count } else { 0 };
    let mut found = find_members(&zset, &search, limit);
    let returned = if plan.count == 0 {
        found.len()
    } else {
        found.len().min(plan.count)
    };
    match sort {
        Sort::Asc => found.sort_by(|a, b| a.dist.total_cmp(&b.dist)),
        Sort::Desc => found.sort_by(|a, b| b.dist.total_cmp(&a.dist)),
        Sort::None => {}
    }
    found.truncate(returned);
    for point in &mut found {
        point.dist /= search.conversion;
    }

    match (plan.store, write) {
        (Some((store, store_dist)), Some(mut guard)) => {
            let mut result = ZSet::new();
            for point in &found {
                let score = if store_dist { point.dist } else { point.score };
                result.insert(&point.member[..], score);
            }
            if result.is_empty() {
                guard.remove(&store);
            } else {
                guard.set(&store, Value::ZSet(std::sync::Arc::new(result)), None);
            }
            drop(guard);
            if kind != Kind::SearchStore && returned > 0 {
                // GEOSEARCHSTORE's destination is in its key positions, so dispatch wakes its
                // waiters; GEORADIUS's STORE key is found by parsing, so wake them here.
                ctx.server.blocking.signal(ctx.client.db, &store);
            }
            ctx.out.int(i64::try_from(returned).unwrap_or(i64::MAX));
        }
        _ => {
            let extras = Extras {
                dist: plan.with_dist,
                hash: plan.with_hash,
                coord: plan.with_coord,
            };
            reply_found(ctx, extras, &found);
        }
    }
}

/// Which extras each result carries.
#[derive(Debug, Clone, Copy)]
struct Extras {
    dist: bool,
    hash: bool,
    coord: bool,
}

fn reply_found(ctx: &mut Ctx<'_>, extras: Extras, found: &[Found]) {
    let n_extras = usize::from(extras.dist) + usize::from(extras.hash) + usize::from(extras.coord);
    ctx.out.array_len(found.len());
    for point in found {
        if n_extras > 0 {
            ctx.out.array_len(n_extras + 1);
        }
        ctx.out.bulk(&point.member);
        if extras.dist {
            ctx.out.bulk(distance_text(point.dist).as_bytes());
        }
        if extras.hash {
            ctx.out.int(point.score as i64);
        }
        if extras.coord {
            reply_coordinates(ctx, point.position);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_coordinates_print_as_redis() {
        assert_eq!(distance_text(166_274.151_56), "166274.1516");
        assert_eq!(distance_text(0.0), "0.0000");
        assert_eq!(distance_text(0.775), "0.7750");
        assert_eq!(distance_text(0.00001), "0.0000");
        assert_eq!(
            coordinate_text(13.361_389_338_970_184),
            "13.36138933897018433"
        );
        assert_eq!(coordinate_text(-0.0), "0");
        assert_eq!(coordinate_text(2.5), "2.5");
        assert_eq!(coordinate_text(-3.0), "-3");
    }
}
