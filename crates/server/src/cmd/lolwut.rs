//! LOLWUT's computer art, as Redis 7.0 draws it: Redis 5's "Schotter" (squares that tumble
//! more the lower the row, in Braille characters) and Redis 6's skyline (skyscrapers in the
//! four grays of a color terminal). Both draw on a canvas of small integers and then render
//! it to text; the random choices come from a source handed in, so tests can fix them.

use bytes::Bytes;

use super::{Ctx, eq_ignore_case, parse_i64, reply};
use crate::info;

/// The largest value the random source returns (glibc's `RAND_MAX`): draws scale by it.
const RAND_MAX: u32 = i32::MAX as u32;

/// Schotter's canvas stops growing at this many pixel rows. Redis lets it grow to what the
/// parameters ask (up to about 400,000 rows of 2,000 pixels); below this height forkless
/// draws exactly what Redis draws, above it the picture is cut at the bottom, so one call
/// never allocates more than about 16 MB.
const MAX_SCHOTTER_HEIGHT: usize = 8_000;

/// Redis divides by this truncated square root of 2, not by the exact constant: a square
/// whose size lands on a rounding edge gets the corners Redis's gets.
#[expect(
    clippy::approx_constant,
    reason = "Redis's own truncated value, for the same pixels"
)]
const REDIS_SQRT_2: f64 = 1.414_213_562_3;

/// A picture of `width` x `height` pixels, each a small color index.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize, background: u8) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![background; width * height],
        }
    }

    /// The pixel's index, or None outside the canvas.
    fn index(&self, x: i64, y: i64) -> Option<usize> {
        let x = usize::try_from(x).ok().filter(|&x| x < self.width)?;
        let y = usize::try_from(y).ok().filter(|&y| y < self.height)?;
        Some(x + y * self.width)
    }

    /// Sets a pixel; a point outside the canvas is left out.
    fn set(&mut self, x: i64, y: i64, color: u8) {
        if let Some(pixel) = self.index(x, y).and_then(|idx| self.pixels.get_mut(idx)) {
            *pixel = color;
        }
    }

    /// A pixel's color; 0 outside the canvas.
    fn get(&self, x: i64, y: i64) -> u8 {
        self.index(x, y)
            .and_then(|idx| self.pixels.get(idx))
            .copied()
            .unwrap_or(0)
    }

    /// A straight line with Bresenham's steps, both ends included.
    fn line(&mut self, mut x1: i64, mut y1: i64, x2: i64, y2: i64, color: u8) {
        let dx = (x2 - x1).abs();
        let dy = (y2 - y1).abs();
        let step_x = if x1 < x2 { 1 } else { -1 };
        let step_y = if y1 < y2 { 1 } else { -1 };
        let mut err = dx - dy;
        loop {
            self.set(x1, y1, color);
            if x1 == x2 && y1 == y2 {
                break;
            }
            let doubled = err * 2;
            if doubled > -dy {
                err -= dy;
                x1 += step_x;
            }
            if doubled < dx {
                err += dx;
                y1 += step_y;
            }
        }
    }

    /// The outline of a square centered on (x, y), `size` wide before its rotation by
    /// `angle` radians. The arithmetic keeps C's float/double mix, so the corners land on
    /// the pixels Redis's land on.
    fn square(&mut self, x: i64, y: i64, size: f32, angle: f32, color: u8) {
        // The corners sit on a circle: a square inscribed in a circle of radius 1 has sides
        // of sqrt(2), so the side is scaled down by it.
        let radius = (f64::from(size) / REDIS_SQRT_2) as f32;
        let radius = f64::from(radius).round() as f32;
        let mut corners = [(0i64, 0i64); 4];
        let mut turn = (std::f64::consts::FRAC_PI_4 + f64::from(angle)) as f32;
        for corner in &mut corners {
            let turn_wide = f64::from(turn);
            *corner = (
                (turn_wide.sin() * f64::from(radius) + x as f64).round() as i64,
                (turn_wide.cos() * f64::from(radius) + y as f64).round() as i64,
            );
            turn = (f64::from(turn) + std::f64::consts::FRAC_PI_2) as f32;
        }
        for idx in 0..4 {
            let (x1, y1) = corners[idx];
            let (x2, y2) = corners[(idx + 1) % 4];
            self.line(x1, y1, x2, y2, color);
        }
    }
}

/// LOLWUT [VERSION v] [args ...]: VERSION 5 and 6 draw their art with the arguments after the
/// version; anything else (forkless reports Redis 7.0's version) answers the version line.
pub(super) fn lolwut(ctx: &mut Ctx<'_>, argv: &[Bytes]) {
    let mut args = argv.get(1..).unwrap_or_default();
    // Redis writes the version as "<v as unsigned 32 bits>.0.0" and picks by its prefix: only
    // 5 and 6 have art of their own.
    let mut major = None;
    if let [option, version, rest @ ..] = args
        && eq_ignore_case(option, "version")
    {
        let Some(version) = parse_i64(version) else {
            return ctx.out.error(reply::NOT_INTEGER);
        };
        major = Some(version as u32);
        args = rest;
    }
    let mut rng = rand::rng();
    let mut random = move || rand::Rng::random_range(&mut rng, 0..=RAND_MAX);
    let text = match major {
        Some(5) => {
            let Some(params) = parse_params(args, &[66, 8, 12]) else {
                return ctx.out.error(reply::NOT_INTEGER);
            };
            schotter(params[0], params[1], params[2], &mut random)
        }
        Some(6) => {
            let Some(params) = parse_params(args, &[80, 20]) else {
                return ctx.out.error(reply::NOT_INTEGER);
            };
            skyline(params[0], params[1], &mut random)
        }
        _ => format!("Redis ver. {}\n", info::REDIS_VERSION).into_bytes(),
    };
    ctx.out.verbatim(b"txt", &text);
}

/// The integer parameters in `args`, each defaulting to its entry in `defaults` and clamped
/// to 1..=1000 later; None when one given is not an integer. Extra arguments are ignored, as
/// in Redis.
fn parse_params<const N: usize>(args: &[Bytes], defaults: &[i64; N]) -> Option<[i64; N]> {
    let mut params = *defaults;
    for (param, arg) in params.iter_mut().zip(args) {
        *param = parse_i64(arg)?;
    }
    Some(params)
}

/// Redis 5's LOLWUT: Georg Nees's "Schotter" for a terminal `cols` wide (1..=1000), with
/// `per_row` squares per row and `per_col` rows (each 1..=200).
fn schotter(cols: i64, per_row: i64, per_col: i64, random: &mut dyn FnMut() -> u32) -> Vec<u8> {
    let cols = cols.clamp(1, 1000);
    let per_row = per_row.clamp(1, 200);
    let per_col = per_col.clamp(1, 200);
    let width = cols * 2;
    let padding: i64 = if width > 4 { 2 } else { 0 };
    let side = (width - padding * 2) as f32 / per_row as f32;
    let height = (side * per_col as f32 + (padding * 2) as f32) as i64;
    let height = usize::try_from(height)
        .unwrap_or(0)
        .min(MAX_SCHOTTER_HEIGHT);
    let mut canvas = Canvas::new(usize::try_from(width).unwrap_or(0), height, 0);
    let unit = |value: u32| value as f32 / RAND_MAX as f32;
    for row in 0..per_col {
        for col in 0..per_row {
            let mut center_x = (col as f32 * side + side / 2.0 + padding as f32) as i64;
            let mut center_y = (row as f32 * side + side / 2.0 + padding as f32) as i64;
            let mut angle = 0.0f32;
            // The first two rows stand straight; below them the squares turn and shift more
            // the lower they are.
            if row > 1 {
                let mut turn = unit(random()) / per_col as f32 * row as f32;
                let mut shift_x = unit(random()) / per_col as f32 * row as f32;
                let mut shift_y = unit(random()) / per_col as f32 * row as f32;
                if random() % 2 == 1 {
                    turn = -turn;
                }
                if random() % 2 == 1 {
                    shift_x = -shift_x;
                }
                if random() % 2 == 1 {
                    shift_y = -shift_y;
                }
                angle = turn;
                center_x = (center_x as f32 + shift_x * side / 3.0) as i64;
                center_y = (center_y as f32 + shift_y * side / 3.0) as i64;
            }
            canvas.square(center_x, center_y, side, angle, 1);
        }
    }
    let mut text = render_braille(&canvas);
    text.extend_from_slice(b"\nGeorg Nees - schotter, plotter on paper, 1968. Redis ver. ");
    text.extend_from_slice(info::REDIS_VERSION.as_bytes());
    text.push(b'\n');
    text
}

/// The canvas as Braille characters, each 2 pixels wide and 4 tall, dots set where the
/// pixel is not 0; rows end with a newline except the last.
fn render_braille(canvas: &Canvas) -> Vec<u8> {
    // Which pixel of the 2x4 cell each of the character's 8 dots shows, in bit order.
    const DOTS: [(i64, i64); 8] = [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
        (0, 3),
        (1, 3),
    ];
    let mut text = Vec::with_capacity(canvas.width / 2 * 3 * (canvas.height / 4 + 1));
    let (width, height) = (canvas.width as i64, canvas.height as i64);
    let mut y = 0;
    while y < height {
        let mut x = 0;
        while x < width {
            let mut dots = 0u32;
            for (bit, (dx, dy)) in DOTS.iter().enumerate() {
                if canvas.get(x + dx, y + dy) != 0 {
                    dots |= 1 << bit;
                }
            }
            // U+2800 plus the dots, in UTF-8's three-byte form.
            let code = 0x2800 + dots;
            text.push((0xE0 | (code >> 12)) as u8);
            text.push((0x80 | ((code >> 6) & 0x3F)) as u8);
            text.push((0x80 | (code & 0x3F)) as u8);
            x += 2;
        }
        if y != height - 1 {
            text.push(b'\n');
        }
        y += 4;
    }
    text
}

/// One skyscraper of the skyline.
struct Skyscraper {
    x_offset: i64,
    width: i64,
    height: i64,
    windows: bool,
    color: u8,
}

fn draw_skyscraper(canvas: &mut Canvas, building: &Skyscraper, random: &mut dyn FnMut() -> u32) {
    let bottom = canvas.height as i64 - 1;
    let top = bottom - building.height + 1;
    let (left, right) = (building.x_offset, building.x_offset + building.width);
    for y in (top..=bottom).rev() {
        for x in left..right {
            // The roof is two pixels narrower on each side.
            if y == top && (x <= left + 1 || x >= right - 2) {
                continue;
            }
            let mut color = building.color;
            // Windows stay clear of the walls, roof and ground: two pixels wide (terminal
            // cells are tall) and one high, in a gray other than the wall's.
            if building.windows && x > left + 1 && x < right - 2 && y > top + 1 && y < bottom - 1 {
                let rel_x = x - (left + 1);
                let rel_y = y - (top + 1);
                if (rel_x / 2) % 2 != 0 && rel_y % 2 != 0 {
                    loop {
                        color = 1 + (random() % 2) as u8;
                        if color != building.color {
                            break;
                        }
                    }
                    // Both pixels of a window share the color.
                    if rel_x % 2 != 0 {
                        color = canvas.get(x - 1, y);
                    }
                }
            }
            canvas.set(x, y, color);
        }
    }
}

/// Redis 6's LOLWUT: a city skyline `cols` x `rows` (each 1..=1000) in the style of 8-bit
/// games' parallax backgrounds.
fn skyline(cols: i64, rows: i64, random: &mut dyn FnMut() -> u32) -> Vec<u8> {
    let cols = cols.clamp(1, 1000);
    let rows = rows.clamp(1, 1000);
    let mut canvas = Canvas::new(cols as usize, rows as usize, 3);
    let next = |random: &mut dyn FnMut() -> u32, modulus: i64| i64::from(random()) % modulus;
    // The background buildings, windowless, the lighter gray drawn first so that it stays
    // behind.
    for color in [2u8, 1] {
        let mut offset: i64 = -10;
        while offset < cols {
            offset += next(random, 8);
            let width = 10 + next(random, 9);
            // C's `height/2 + rand()%height/2`: the remainder is taken before the division.
            let height = if color == 2 {
                rows / 2 + next(random, rows) / 2
            } else {
                rows / 2 + next(random, rows) / 3
            };
            let building = Skyscraper {
                x_offset: offset,
                width,
                height,
                windows: false,
                color,
            };
            draw_skyscraper(&mut canvas, &building, random);
            offset += if color == 2 { width / 2 } else { width + 1 };
        }
    }
    // The black buildings in front, with windows.
    let mut offset: i64 = -10;
    while offset < cols {
        offset += next(random, 8);
        let mut width = 5 + next(random, 14);
        if width % 4 != 0 {
            width += width % 3;
        }
        let height = rows / 3 + next(random, rows) / 2;
        let building = Skyscraper {
            x_offset: offset,
            width,
            height,
            windows: true,
            color: 0,
        };
        draw_skyscraper(&mut canvas, &building, random);
        offset += width + 5;
    }
    let mut text = render_grays(&canvas);
    text.extend_from_slice(
        b"\nDedicated to the 8 bit game developers of past and present.\n\
          Original 8 bit image from Plaguemon by hikikomori. Redis ver. ",
    );
    text.extend_from_slice(info::REDIS_VERSION.as_bytes());
    text.push(b'\n');
    text
}

/// The canvas as colored spaces: each pixel one cell with both foreground and background set
/// to one of the terminal's four grays.
fn render_grays(canvas: &Canvas) -> Vec<u8> {
    let mut text = Vec::with_capacity(canvas.pixels.len() * 18 + canvas.height);
    for y in 0..canvas.height {
        for x in 0..canvas.width {
            let escape: &[u8] = match canvas.get(x as i64, y as i64) {
                1 => b"0;90;100m",
                2 => b"0;37;47m",
                3 => b"0;97;107m",
                _ => b"0;30;40m",
            };
            text.extend_from_slice(b"\x1b[");
            text.extend_from_slice(escape);
            text.extend_from_slice(b" \x1b[0m");
        }
        if y + 1 != canvas.height {
            text.push(b'\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed sequence (a linear congruential generator), so pictures repeat.
    fn fixed_source() -> impl FnMut() -> u32 {
        let mut state: u64 = 42;
        move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            ((state >> 33) as u32) & RAND_MAX
        }
    }

    #[test]
    fn schotter_has_the_size_redis_gives_it() {
        let text = schotter(66, 8, 12, &mut fixed_source());
        let text = String::from_utf8(text).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        // 132 pixels wide with padding 2: squares of 16 pixels, 12 rows of them plus the
        // padding is 196 pixels tall, 49 rows of Braille; a blank line before the caption.
        assert_eq!(lines.len(), 49 + 2);
        assert_eq!(lines[49], "");
        for line in &lines[..49] {
            assert_eq!(line.chars().count(), 66);
            assert!(line.chars().all(|c| ('\u{2800}'..='\u{28FF}').contains(&c)));
        }
        assert_eq!(
            lines[50],
            format!(
                "Georg Nees - schotter, plotter on paper, 1968. Redis ver. {}",
                info::REDIS_VERSION
            )
        );
        // The top rows are straight: the first square's top edge is a full run of dots.
        assert!(lines[0].chars().nth(2).is_some_and(|c| c != '\u{2800}'));
    }

    #[test]
    fn schotter_clamps_its_parameters() {
        let tiny = String::from_utf8(schotter(-5, 0, 0, &mut fixed_source())).expect("utf-8");
        // One column: a canvas 2 pixels wide, no padding, one square 2 pixels tall.
        assert_eq!(tiny.lines().next().map(|l| l.chars().count()), Some(1));
        let huge = schotter(1000, 1, 200, &mut fixed_source());
        let rows = huge.iter().filter(|&&b| b == b'\n').count();
        assert!(rows <= MAX_SCHOTTER_HEIGHT / 4 + 2);
    }

    #[test]
    fn skyline_has_one_cell_per_pixel() {
        let text = skyline(80, 20, &mut fixed_source());
        let text = String::from_utf8(text).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20 + 2);
        for line in &lines[..20] {
            assert_eq!(line.matches(" \x1b[0m").count(), 80);
        }
        // The top row is mostly sky (white), the bottom row all buildings (never white).
        assert!(!lines[19].contains("0;97;107m"));
        assert!(lines[0].contains("0;97;107m"));
        assert_eq!(
            lines[20],
            "Dedicated to the 8 bit game developers of past and present."
        );
    }

    #[test]
    fn squares_are_closed_outlines() {
        let mut canvas = Canvas::new(20, 20, 0);
        canvas.square(10, 10, 8.0, 0.0, 1);
        // An unrotated square of side 8 drawn through corners at radius round(8/sqrt 2) = 6
        // on the diagonals: a diamond's four corners all on the canvas.
        assert_eq!(canvas.get(10 + 4, 10 + 4), 1);
        assert_eq!(canvas.get(10 - 4, 10 - 4), 1);
        assert_eq!(canvas.get(10, 10), 0);
    }
}
