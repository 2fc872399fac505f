//! The SVG: for each mode a column with anonymous memory over time (top) and per-interval p99
//! latency over time (bottom), time 0 = the operation sent (BGSAVE, BGREWRITEAOF, REPLICAOF).
//! Axes are shared across columns so the modes can be compared at a glance; the shaded span is
//! the operation (the save, the rewrite, the sync).

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::report::Sample;

/// One mode's series for the plot.
pub struct Series<'a> {
    /// Column title.
    pub mode: &'a str,
    /// The samples.
    pub samples: &'a [Sample],
    /// The eviction scenario: the cgroup limit and `maxmemory`, drawn as horizontal lines (the
    /// samples' `used_memory` is drawn as a thin black line).
    pub limits: (Option<u64>, Option<u64>),
}

const COLORS: [RGBColor; 3] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
];

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

/// Draws `series` into an SVG file at `path`; `operation` names time 0 on the x axis (`BGSAVE`,
/// `BGREWRITEAOF`, `REPLICAOF`). Where samples carry buffered replication writes, the memory
/// panel draws them as a thin second line.
pub fn draw(path: &Path, series: &[Series<'_>], operation: &str) -> anyhow::Result<()> {
    let x_desc = format!("seconds since {operation}");
    let n = series.len().max(1);
    let width = u32::try_from(420 * n).unwrap_or(1260);
    let root = SVGBackend::new(path, (width, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let all = || series.iter().flat_map(|s| s.samples.iter());
    let t_min = all().map(|s| s.t_ms).min().unwrap_or(0) as f64 / 1000.0;
    let t_max = (all().map(|s| s.t_ms).max().unwrap_or(1) as f64 / 1000.0).max(t_min + 0.1);
    let limits = series
        .iter()
        .flat_map(|s| [s.limits.0, s.limits.1])
        .flatten();
    let mem_max = all()
        .map(|s| gib(s.anon_bytes.max(s.used_memory.unwrap_or(0))))
        .chain(limits.map(gib))
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.05;
    let p99_max = all()
        .map(|s| s.p99_us_in_interval as f64 / 1000.0)
        .fold(0.0, f64::max)
        .max(0.01)
        * 1.05;
    let columns = root.split_evenly((2, n));
    for (idx, s) in series.iter().enumerate() {
        let color = COLORS.get(idx % COLORS.len()).copied().unwrap_or(BLACK);
        let saving: Vec<f64> = s
            .samples
            .iter()
            .filter(|x| x.bgsave_in_progress)
            .map(|x| x.t_ms as f64 / 1000.0)
            .collect();
        let save_span = saving.first().zip(saving.last()).map(|(a, b)| (*a, *b));
        let buffers: Vec<(f64, f64)> = s
            .samples
            .iter()
            .filter_map(|x| Some((x.t_ms as f64 / 1000.0, gib(x.repl_buffer_bytes?))))
            .collect();
        let panels = [
            (
                idx,
                if buffers.is_empty() {
                    format!("{}: anon memory (GiB)", s.mode)
                } else {
                    format!("{}: anon memory, repl. buffers (GiB)", s.mode)
                },
                mem_max,
                s.samples
                    .iter()
                    .map(|x| (x.t_ms as f64 / 1000.0, gib(x.anon_bytes)))
                    .collect::<Vec<_>>(),
            ),
            (
                n + idx,
                format!("{}: p99 latency per interval (ms)", s.mode),
                p99_max,
                s.samples
                    .iter()
                    .filter(|x| x.ops_in_interval > 0)
                    .map(|x| (x.t_ms as f64 / 1000.0, x.p99_us_in_interval as f64 / 1000.0))
                    .collect(),
            ),
        ];
        for (panel, (area_idx, title, y_max, points)) in panels.into_iter().enumerate() {
            let Some(area) = columns.get(area_idx) else {
                continue;
            };
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 16))
                .margin(8)
                .margin_right(24)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(t_min..t_max, 0.0..y_max)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc(x_desc.as_str())
                .max_light_lines(0)
                .draw()
                .map_err(plot_error)?;
            if let Some((start, end)) = save_span {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(start, 0.0), (end, y_max)],
                        color.mix(0.08).filled(),
                    )))
                    .map_err(plot_error)?;
            }
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(plot_error)?;
            if panel == 0 && !buffers.is_empty() {
                chart
                    .draw_series(LineSeries::new(
                        buffers.iter().copied(),
                        BLACK.mix(0.6).stroke_width(1),
                    ))
                    .map_err(plot_error)?;
            }
            if area_idx == idx {
                draw_eviction_lines(&mut chart, s, (t_min, t_max))?;
            }
        }
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

/// The memory panel's extras in the eviction scenario: `used_memory` (thin black), the cgroup
/// limit (red) and `maxmemory` (grey).
fn draw_eviction_lines<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    s: &Series<'_>,
    (t_min, t_max): (f64, f64),
) -> anyhow::Result<()> {
    let used: Vec<(f64, f64)> = s
        .samples
        .iter()
        .filter_map(|x| Some((x.t_ms as f64 / 1000.0, gib(x.used_memory?))))
        .collect();
    if !used.is_empty() {
        chart
            .draw_series(LineSeries::new(used, BLACK.stroke_width(1)))
            .map_err(plot_error)?;
    }
    for (bytes, color) in [(s.limits.0, RED), (s.limits.1, RGBColor(0x80, 0x80, 0x80))] {
        if let Some(bytes) = bytes {
            let y = gib(bytes);
            chart
                .draw_series(LineSeries::new(
                    [(t_min, y), (t_max, y)],
                    color.stroke_width(1),
                ))
                .map_err(plot_error)?;
        }
    }
    Ok(())
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}
