//! Redis 7.0's geohash arithmetic (`geohash.c`, `geohash_helper.c`): 52-bit interleaved
//! scores, cell neighbours, the search-area estimate and the haversine distance, computed in
//! the same order of floating-point operations as Redis so that scores, positions and
//! distances are the same to the last bit.
//!
//! A position is encoded at step 26: latitude (in -85.05112878..85.05112878, the Web Mercator
//! limits) and longitude each scaled to a 26-bit integer, interleaved latitude-first into the
//! low 52 bits (longitude bits at odd positions), and stored as the member's score.

/// Bits per coordinate of a stored score.
pub(crate) const STEP_MAX: u8 = 26;
pub(crate) const LAT_MIN: f64 = -85.051_128_78;
pub(crate) const LAT_MAX: f64 = 85.051_128_78;
pub(crate) const LONG_MIN: f64 = -180.0;
pub(crate) const LONG_MAX: f64 = 180.0;

/// WGS-84's quadratic mean radius, Redis's `EARTH_RADIUS_IN_METERS`.
const EARTH_RADIUS_IN_METERS: f64 = 6_372_797.560_856;
const MERCATOR_MAX: f64 = 20_037_726.37;
/// Redis's `D_R`: degrees to radians is `ang * D_R`, back is `ang / D_R`.
const D_R: f64 = std::f64::consts::PI / 180.0;

/// A value range of one coordinate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Range {
    pub(crate) min: f64,
    pub(crate) max: f64,
}

/// The ranges scores are encoded in.
pub(crate) const WGS84_LONG: Range = Range {
    min: LONG_MIN,
    max: LONG_MAX,
};
pub(crate) const WGS84_LAT: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

/// A geohash cell: `step` bits per coordinate, interleaved into `bits`. The all-zero value is
/// Redis's "no cell" (a neighbour excluded from a search).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Cell {
    pub(crate) bits: u64,
    pub(crate) step: u8,
}

impl Cell {
    fn is_zero(self) -> bool {
        self.bits == 0 && self.step == 0
    }
}

/// A cell's extent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Area {
    pub(crate) longitude: Range,
    pub(crate) latitude: Range,
}

fn deg_rad(angle: f64) -> f64 {
    angle * D_R
}

fn rad_deg(angle: f64) -> f64 {
    angle / D_R
}

/// Spreads the low 32 bits of `x` and `y` into alternate bits, `x` in the even ones.
fn interleave64(x: u32, y: u32) -> u64 {
    const B: [u64; 5] = [
        0x5555_5555_5555_5555,
        0x3333_3333_3333_3333,
        0x0F0F_0F0F_0F0F_0F0F,
        0x00FF_00FF_00FF_00FF,
        0x0000_FFFF_0000_FFFF,
    ];
    const S: [u32; 5] = [1, 2, 4, 8, 16];
    let mut x = u64::from(x);
    let mut y = u64::from(y);
    for (mask, shift) in B.iter().zip(S).rev() {
        x = (x | (x << shift)) & mask;
        y = (y | (y << shift)) & mask;
    }
    x | (y << 1)
}

/// The inverse of [`interleave64`]: even bits in the low half, odd bits in the high half.
fn deinterleave64(interleaved: u64) -> u64 {
    const B: [u64; 6] = [
        0x5555_5555_5555_5555,
        0x3333_3333_3333_3333,
        0x0F0F_0F0F_0F0F_0F0F,
        0x00FF_00FF_00FF_00FF,
        0x0000_FFFF_0000_FFFF,
        0x0000_0000_FFFF_FFFF,
    ];
    const S: [u32; 6] = [0, 1, 2, 4, 8, 16];
    let mut x = interleaved;
    let mut y = interleaved >> 1;
    for (mask, shift) in B.iter().zip(S) {
        x = (x | (x >> shift)) & mask;
        y = (y | (y >> shift)) & mask;
    }
    x | (y << 32)
}

/// Redis's `geohashEncode`: the cell of `step` bits per coordinate holding the point, or None
/// outside the ranges (or the WGS-84 limits).
pub(crate) fn encode(
    long_range: Range,
    lat_range: Range,
    longitude: f64,
    latitude: f64,
    step: u8,
) -> Option<Cell> {
    if step > 32 || step == 0 {
        return None;
    }
    if !(LONG_MIN..=LONG_MAX).contains(&longitude) || !(LAT_MIN..=LAT_MAX).contains(&latitude) {
        return None;
    }
    if latitude < lat_range.min
        || latitude > lat_range.max
        || longitude < long_range.min
        || longitude > long_range.max
    {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_offset = (latitude - lat_range.min) / (lat_range.max - lat_range.min) * scale;
    let long_offset = (longitude - long_range.min) / (long_range.max - long_range.min) * scale;
    // C converts the doubles to uint32_t by truncation; both are in 0..=2^step.
    Some(Cell {
        bits: interleave64(lat_offset as u32, long_offset as u32),
        step,
    })
}

/// [`encode`] in the WGS-84 ranges scores use.
pub(crate) fn encode_wgs84(longitude: f64, latitude: f64, step: u8) -> Option<Cell> {
    encode(WGS84_LONG, WGS84_LAT, longitude, latitude, step)
}

/// Redis's `geohashDecode`: the extent of `cell`, None for the zero cell.
pub(crate) fn decode(long_range: Range, lat_range: Range, cell: Cell) -> Option<Area> {
    if cell.is_zero() {
        return None;
    }
    let separated = deinterleave64(cell.bits);
    let lat_scale = lat_range.max - lat_range.min;
    let long_scale = long_range.max - long_range.min;
    let ilato = separated as u32;
    let ilono = (separated >> 32) as u32;
    let cells = (1u64 << cell.step) as f64;
    Some(Area {
        latitude: Range {
            min: lat_range.min + (f64::from(ilato) / cells) * lat_scale,
            max: lat_range.min + ((f64::from(ilato) + 1.0) / cells) * lat_scale,
        },
        longitude: Range {
            min: long_range.min + (f64::from(ilono) / cells) * long_scale,
            max: long_range.min + ((f64::from(ilono) + 1.0) / cells) * long_scale,
        },
    })
}

/// The position a score stands for (Redis's `decodeGeohash`): the centre of its step-26 cell,
/// clamped to the WGS-84 limits, as (longitude, latitude).
pub(crate) fn decode_score(score: f64) -> Option<(f64, f64)> {
    // C's double-to-uint64_t conversion, as Redis does it; scores written by GEOADD are exact
    // integers below 2^52.
    let cell = Cell {
        bits: score as u64,
        step: STEP_MAX,
    };
    let area = decode(WGS84_LONG, WGS84_LAT, cell)?;
    let longitude = ((area.longitude.min + area.longitude.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let latitude = ((area.latitude.min + area.latitude.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    Some((longitude, latitude))
}

/// Redis's `geohashAlign52Bits`: the cell's bits as the prefix of a 52-bit score.
pub(crate) fn align52(cell: Cell) -> u64 {
    cell.bits << (52 - u32::from(cell.step) * 2)
}

/// The score GEOADD stores for a position, or None outside the WGS-84 limits.
pub(crate) fn score_of(longitude: f64, latitude: f64) -> Option<u64> {
    encode_wgs84(longitude, latitude, STEP_MAX).map(align52)
}

fn move_x(cell: &mut Cell, direction: i8) {
    if direction == 0 {
        return;
    }
    let shift = 64 - u32::from(cell.step) * 2;
    let mut x = cell.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let y = cell.bits & 0x5555_5555_5555_5555;
    let zz = 0x5555_5555_5555_5555u64 >> shift;
    if direction > 0 {
        x = x.wrapping_add(zz + 1);
    } else {
        x |= zz;
        x = x.wrapping_sub(zz + 1);
    }
    x &= 0xaaaa_aaaa_aaaa_aaaau64 >> shift;
    cell.bits = x | y;
}

fn move_y(cell: &mut Cell, direction: i8) {
    if direction == 0 {
        return;
    }
    let shift = 64 - u32::from(cell.step) * 2;
    let x = cell.bits & 0xaaaa_aaaa_aaaa_aaaa;
    let mut y = cell.bits & 0x5555_5555_5555_5555;
    let zz = 0xaaaa_aaaa_aaaa_aaaau64 >> shift;
    if direction > 0 {
        y = y.wrapping_add(zz + 1);
    } else {
        y |= zz;
        y = y.wrapping_sub(zz + 1);
    }
    y &= 0x5555_5555_5555_5555u64 >> shift;
    cell.bits = x | y;
}

/// The eight neighbours of a cell.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Neighbors {
    pub(crate) north: Cell,
    pub(crate) east: Cell,
    pub(crate) west: Cell,
    pub(crate) south: Cell,
    pub(crate) north_east: Cell,
    pub(crate) south_east: Cell,
    pub(crate) north_west: Cell,
    pub(crate) south_west: Cell,
}

fn moved(cell: Cell, dx: i8, dy: i8) -> Cell {
    let mut cell = cell;
    move_x(&mut cell, dx);
    move_y(&mut cell, dy);
    cell
}

fn neighbors(cell: Cell) -> Neighbors {
    Neighbors {
        east: moved(cell, 1, 0),
        west: moved(cell, -1, 0),
        south: moved(cell, 0, -1),
        north: moved(cell, 0, 1),
        north_west: moved(cell, -1, 1),
        north_east: moved(cell, 1, 1),
        south_east: moved(cell, 1, -1),
        south_west: moved(cell, -1, -1),
    }
}

/// What a search covers: a circle (BYRADIUS, GEORADIUS) or a box (BYBOX), around a centre,
/// with the unit's size in meters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Shape {
    Circle { radius: f64 },
    Box { width: f64, height: f64 },
}

/// A search: centre (longitude, latitude), shape in the unit, and meters per unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Search {
    pub(crate) center: (f64, f64),
    pub(crate) shape: Shape,
    pub(crate) conversion: f64,
}

/// Redis's `geohashEstimateStepsByRadius`.
fn estimate_steps(range_meters: f64, latitude: f64) -> u8 {
    if range_meters == 0.0 {
        return 26;
    }
    let mut range = range_meters;
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&latitude) {
        step -= 1;
        if !(-80.0..=80.0).contains(&latitude) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

/// Redis's `geohashBoundingBox`: [min longitude, min latitude, max longitude, max latitude].
fn bounding_box(search: &Search) -> [f64; 4] {
    let (longitude, latitude) = search.center;
    let (height, width) = match search.shape {
        Shape::Circle { radius } => (radius, radius),
        Shape::Box { width, height } => (height / 2.0, width / 2.0),
    };
    let height = search.conversion * height;
    let width = search.conversion * width;
    let lat_delta = rad_deg(height / EARTH_RADIUS_IN_METERS);
    let long_delta_top =
        rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(latitude + lat_delta).cos());
    let long_delta_bottom =
        rad_deg(width / EARTH_RADIUS_IN_METERS / deg_rad(latitude - lat_delta).cos());
    let southern = latitude < 0.0;
    let long_delta = if southern {
        long_delta_bottom
    } else {
        long_delta_top
    };
    [
        longitude - long_delta,
        latitude - lat_delta,
        longitude + long_delta,
        latitude + lat_delta,
    ]
}

/// The nine cells a search reads (Redis's `geohashCalculateAreasByShapeWGS84` then
/// `membersOfAllNeighbors`' order): the centre's cell, then north, south, east, west,
/// north-east, north-west, south-east, south-west; an excluded neighbour is the zero cell.
pub(crate) fn search_cells(search: &Search) -> [Cell; 9] {
    let [min_lon, min_lat, max_lon, max_lat] = bounding_box(search);
    let (longitude, latitude) = search.center;
    let radius_meters = match search.shape {
        Shape::Circle { radius } => radius,
        Shape::Box { width, height } => {
            ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
        }
    } * search.conversion;
    let mut steps = estimate_steps(radius_meters, latitude);
    let locate = |steps: u8| {
        let cell = encode_wgs84(longitude, latitude, steps).unwrap_or_default();
        let cell = Cell {
            step: steps,
            ..cell
        };
        (cell, neighbors(cell), decode(WGS84_LONG, WGS84_LAT, cell))
    };
    let (mut cell, mut around, mut area) = locate(steps);

    let area_of = |cell: Cell| decode(WGS84_LONG, WGS84_LAT, cell);
    let decrease = area_of(around.north).is_some_and(|north| north.latitude.max < max_lat)
        || area_of(around.south).is_some_and(|south| south.latitude.min > min_lat)
        || area_of(around.east).is_some_and(|east| east.longitude.max < max_lon)
        || area_of(around.west).is_some_and(|west| west.longitude.min > min_lon);
    if steps > 1 && decrease {
        steps -= 1;
        (cell, around, area) = locate(steps);
    }

    if steps >= 2 {
        if let Some(area) = area {
            let zero = Cell::default();
            if area.latitude.min < min_lat {
                around.south = zero;
                around.south_west = zero;
                around.south_east = zero;
            }
            if area.latitude.max > max_lat {
                around.north = zero;
                around.north_east = zero;
                around.north_west = zero;
            }
            if area.longitude.min < min_lon {
                around.west = zero;
                around.south_west = zero;
                around.north_west = zero;
            }
            if area.longitude.max > max_lon {
                around.east = zero;
                around.south_east = zero;
                around.north_east = zero;
            }
        }
    }
    [
        cell,
        around.north,
        around.south,
        around.east,
        around.west,
        around.north_east,
        around.north_west,
        around.south_east,
        around.south_west,
    ]
}

/// The scores `[min, max)` of the members inside `cell`.
pub(crate) fn score_range(cell: Cell) -> (f64, f64) {
    let min = align52(cell);
    let max = align52(Cell {
        bits: cell.bits + 1,
        ..cell
    });
    (min as f64, max as f64)
}

/// Redis's `geohashGetLatDistance`.
fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_IN_METERS * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// Redis's `geohashGetDistance`: the haversine distance in meters.
pub(crate) fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let lon1r = deg_rad(lon1);
    let lon2r = deg_rad(lon2);
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let lat1r = deg_rad(lat1);
    let lat2r = deg_rad(lat2);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_IN_METERS * a.sqrt().asin()
}

/// Redis's `geoWithinShape` for a decoded point: its distance from the centre in meters if it
/// lies inside the search's shape.
pub(crate) fn within(search: &Search, longitude: f64, latitude: f64) -> Option<f64> {
    let (center_lon, center_lat) = search.center;
    match search.shape {
        Shape::Circle { radius } => {
            let dist = distance(center_lon, center_lat, longitude, latitude);
            (dist <= radius * search.conversion).then_some(dist)
        }
        Shape::Box { width, height } => {
            let width = width * search.conversion;
            let height = height * search.conversion;
            if lat_distance(latitude, center_lat) > height / 2.0 {
                return None;
            }
            if distance(longitude, latitude, center_lon, latitude) > width / 2.0 {
                return None;
            }
            Some(distance(center_lon, center_lat, longitude, latitude))
        }
    }
}

/// GEOHASH's 11-character standard geohash of a score: the position re-encoded with the
/// standard latitude range -90..90, five bits per character, the 11th always '0'.
pub(crate) fn standard_geohash(score: f64) -> Option<[u8; 11]> {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (longitude, latitude) = decode_score(score)?;
    let cell = encode(
        Range {
            min: -180.0,
            max: 180.0,
        },
        Range {
            min: -90.0,
            max: 90.0,
        },
        longitude,
        latitude,
        26,
    )
    .unwrap_or(Cell { bits: 0, step: 26 });
    let mut text = [b'0'; 11];
    for (idx, slot) in text.iter_mut().enumerate().take(10) {
        let shift = 52 - (idx + 1) * 5;
        let digit = ((cell.bits >> shift) & 0x1f) as usize;
        *slot = ALPHABET.get(digit).copied().unwrap_or(b'0');
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_round_trips() {
        for (x, y) in [
            (0u32, 0u32),
            (1, 0),
            (0, 1),
            (0x3ff_ffff, 0x155_5555),
            (u32::MAX, 7),
        ] {
            let both = deinterleave64(interleave64(x, y));
            assert_eq!((both as u32, (both >> 32) as u32), (x, y));
        }
    }

    #[test]
    fn scores_and_positions_match_redis() {
        // Values from redis-server 7.0: GEOADD Sicily 13.361389 38.115556 "Palermo" stores
        // this score, and GEOPOS reads back this position.
        assert_eq!(score_of(13.361389, 38.115556), Some(3_479_099_956_230_698));
        let (lon, lat) = decode_score(3_479_099_956_230_698.0).unwrap();
        assert_eq!(format!("{lon:.17}"), "13.36138933897018433");
        assert_eq!(format!("{lat:.17}"), "38.11555639549629859");
        assert_eq!(score_of(180.1, 0.0), None);
        assert_eq!(score_of(0.0, 85.06), None);
    }

    #[test]
    fn standard_geohash_matches_redis() {
        let score = score_of(13.361389, 38.115556).unwrap() as f64;
        assert_eq!(&standard_geohash(score).unwrap(), b"sqc8b49rny0");
    }

    #[test]
    fn distance_matches_redis() {
        // GEODIST Sicily Palermo Catania = 166274.1516 m in redis-server 7.0.
        let (lon1, lat1) = decode_score(score_of(13.361389, 38.115556).unwrap() as f64).unwrap();
        let (lon2, lat2) = decode_score(score_of(15.087269, 37.502669).unwrap() as f64).unwrap();
        let meters = distance(lon1, lat1, lon2, lat2);
        assert_eq!(format!("{:.4}", meters), "166274.1516");
    }
}
