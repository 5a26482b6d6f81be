//! Labelled charts for the toolchain's reports, drawn with [`plotters`]: line charts in panels
//! (training curves) and horizontal bar charts (per-layer SQNR of an int8 model), each written
//! as PNG and/or SVG with axes, tick values, axis labels, a legend and a title.
//!
//! Text is laid out and rasterised with the Ubuntu Light face compiled in from
//! `epaint_default_fonts` (egui's fonts, under the Ubuntu Font Licence), so a picture looks the
//! same on a machine without any system font. SVG files name the face as `sans-serif`; viewers
//! render it with theirs.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// The family every text element asks for; [`register`] binds it to the embedded face.
const FAMILY: &str = "sans-serif";

/// Why a chart could not be written.
#[derive(Debug)]
pub enum ChartError {
    /// Writing `path` failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Encoding the PNG for `path` failed.
    Png {
        /// The file.
        path: PathBuf,
        /// The encoder's message.
        message: String,
    },
    /// plotters refused to draw (its message).
    Draw(String),
    /// The chart has nothing to draw: `what` names the empty part.
    Empty {
        /// Which chart or panel.
        what: String,
    },
}

impl std::fmt::Display for ChartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChartError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ChartError::Png { path, message } => {
                write!(f, "{}: PNG encoding: {message}", path.display())
            }
            ChartError::Draw(m) => write!(f, "drawing the chart: {m}"),
            ChartError::Empty { what } => write!(f, "{what}: no finite values to draw"),
        }
    }
}

impl std::error::Error for ChartError {}

fn draw_err<E: std::fmt::Debug>(e: E) -> ChartError {
    ChartError::Draw(format!("{e:?}"))
}

/// Binds [`FAMILY`] to the embedded face, once per process.
fn register() -> Result<(), ChartError> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        register_font(
            FAMILY,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        )
        .map_err(|_| "the embedded Ubuntu Light font does not parse".to_string())
    })
    .clone()
    .map_err(ChartError::Draw)
}

/// An sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// matplotlib's `tab:blue`.
    pub const BLUE: Rgb = Rgb(31, 119, 180);
    /// `tab:orange`.
    pub const ORANGE: Rgb = Rgb(255, 127, 14);
    /// `tab:green`.
    pub const GREEN: Rgb = Rgb(44, 160, 44);
    /// `tab:red`.
    pub const RED: Rgb = Rgb(214, 39, 40);
    /// `tab:purple`.
    pub const PURPLE: Rgb = Rgb(148, 103, 189);
    /// `tab:gray`.
    pub const GRAY: Rgb = Rgb(127, 127, 127);

    fn rgb(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }

    /// This colour mixed with white: `t` = 0 keeps it, 1 is white.
    pub fn lighten(self, t: f64) -> Rgb {
        let m = |c: u8| (c as f64 + (255.0 - c as f64) * t.clamp(0.0, 1.0)).round() as u8;
        Rgb(m(self.0), m(self.1), m(self.2))
    }
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// A polyline through the points.
    Line,
    /// A polyline with a dot on every point (readable with one point).
    LineAndDots,
    /// Dots only.
    Dots,
}

/// One labelled series of `(x, y)` points; non-finite points are left out.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry (empty: not in the legend).
    pub label: String,
    /// The points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: Rgb,
    /// Line, dots or both.
    pub mark: Mark,
    /// Line width in pixels.
    pub width: u32,
}

/// Where a panel's legend sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legend {
    /// Top right (curves that fall).
    UpperRight,
    /// Bottom right (curves that rise).
    LowerRight,
}

/// One set of axes.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Caption above the axes.
    pub title: String,
    /// X axis label, with its unit.
    pub x_label: String,
    /// Y axis label, with its unit.
    pub y_label: String,
    /// The series, drawn in order (the last on top).
    pub series: Vec<Series>,
    /// A fixed y range; `None` fits the data with a margin.
    pub y_range: Option<(f64, f64)>,
    /// Legend position.
    pub legend: Legend,
    /// The x axis counts whole units (epochs): only integer ticks are labelled.
    pub x_integer: bool,
}

/// Panels on a grid under one title.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Title over the whole figure (names the run).
    pub title: String,
    /// The panels, row by row.
    pub panels: Vec<Panel>,
    /// Panels per row (≥ 1).
    pub columns: usize,
    /// Size of one panel in pixels.
    pub panel_size: (u32, u32),
}

/// The data range of `v` with a 5 % margin, never empty (a single value gets ±½ or ±10 %).
fn fit(v: impl Iterator<Item = f64>) -> Option<Range<f64>> {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
    if !lo.is_finite() {
        return None;
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let d = if lo.fract() == 0.0 {
            0.5
        } else {
            (lo.abs() * 0.1).max(1e-9)
        };
        return Some(lo - d..hi + d);
    }
    let m = 0.05 * (hi - lo);
    Some(lo - m..hi + m)
}

/// Tick text: integers as integers, small or large magnitudes in scientific form, otherwise up
/// to four significant decimals with trailing zeros dropped.
pub fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    if (v - v.round()).abs() < 1e-9 * a.max(1.0) {
        return format!("{}", v.round() as i64);
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &Panel,
) -> Result<(), ChartError> {
    let finite = |s: &Series| {
        s.points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect::<Vec<_>>()
    };
    let series: Vec<(&Series, Vec<(f64, f64)>)> = p.series.iter().map(|s| (s, finite(s))).collect();
    let xr = fit(series.iter().flat_map(|(_, v)| v.iter().map(|q| q.0))).ok_or_else(|| {
        ChartError::Empty {
            what: format!("panel \"{}\"", p.title),
        }
    })?;
    let yr = match p.y_range {
        Some((a, b)) => a..b,
        None => fit(series.iter().flat_map(|(_, v)| v.iter().map(|q| q.1))).ok_or_else(|| {
            ChartError::Empty {
                what: format!("panel \"{}\"", p.title),
            }
        })?,
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(xr, yr)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .x_labels(7)
        .y_labels(7)
        .x_label_formatter(&|v| {
            if p.x_integer && v.fract() != 0.0 {
                String::new()
            } else {
                tick(*v)
            }
        })
        .y_label_formatter(&|v| tick(*v))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(draw_err)?;
    let mut legend = false;
    for (s, pts) in &series {
        let c = s.color.rgb();
        let style = c.stroke_width(s.width.max(1));
        if s.mark != Mark::Line {
            // Dots that stay apart: smaller once there are many.
            let r = if pts.len() > 40 { 2 } else { 4 };
            chart
                .draw_series(pts.iter().map(|&q| Circle::new(q, r, c.filled())))
                .map_err(draw_err)?;
        }
        // The legend hangs on a last, empty series so that lines and dots share one entry.
        let line: Vec<(f64, f64)> = if s.mark == Mark::Dots {
            Vec::new()
        } else {
            pts.clone()
        };
        let anno = chart
            .draw_series(LineSeries::new(line, style))
            .map_err(draw_err)?;
        if !s.label.is_empty() {
            legend = true;
            let dots = s.mark != Mark::Line;
            let line = s.mark != Mark::Dots;
            // One element type for every mark: the part a mark lacks is drawn transparent.
            let line_style = if line { style } else { TRANSPARENT.into() };
            let dot_style = if dots { c.filled() } else { TRANSPARENT.into() };
            anno.label(&s.label).legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (22, 0)], line_style)
                    + Circle::new((11, 0), 4, dot_style)
            });
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .position(match p.legend {
                Legend::UpperRight => SeriesLabelPosition::UpperRight,
                Legend::LowerRight => SeriesLabelPosition::LowerRight,
            })
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(190, 190, 190))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

fn draw_figure<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    f: &Figure,
) -> Result<(), ChartError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let body = root.titled(&f.title, (FAMILY, 24)).map_err(draw_err)?;
    let cols = f.columns.max(1);
    let rows = f.panels.len().div_ceil(cols).max(1);
    for (area, p) in body.split_evenly((rows, cols)).iter().zip(&f.panels) {
        draw_panel(area, p)?;
    }
    root.present().map_err(draw_err)
}

/// Size of a figure in pixels (title strip included).
fn figure_size(f: &Figure) -> (u32, u32) {
    let cols = f.columns.max(1);
    let rows = f.panels.len().div_ceil(cols).max(1);
    (
        f.panel_size.0 * cols as u32,
        f.panel_size.1 * rows as u32 + 40,
    )
}

/// Writes `rgb` (`w × h` RGB8) as a PNG at `path`, through a temporary file and a rename (a
/// reader never sees half a picture).
fn save_png(path: &Path, rgb: Vec<u8>, (w, h): (u32, u32)) -> Result<(), ChartError> {
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| ChartError::Png {
        path: path.into(),
        message: "buffer size does not match the picture".into(),
    })?;
    let tmp = path.with_extension("png.tmp");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| ChartError::Png {
            path: tmp.clone(),
            message: e.to_string(),
        })?;
    std::fs::rename(&tmp, path).map_err(|source| ChartError::Io {
        path: path.into(),
        source,
    })
}

fn save_text(path: &Path, text: &str) -> Result<(), ChartError> {
    let tmp = path.with_extension("svg.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| ChartError::Io {
            path: path.into(),
            source,
        })
}

/// Something drawable on any plotters backend, at a size of its own.
trait Chart {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), ChartError>;
}

impl Chart for Figure {
    fn size(&self) -> (u32, u32) {
        figure_size(self)
    }
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), ChartError> {
        draw_figure(root, self)
    }
}

/// Renders `chart` to a PNG at `png` and/or an SVG at `svg`.
fn write(chart: &impl Chart, png: Option<&Path>, svg: Option<&Path>) -> Result<(), ChartError> {
    register()?;
    let size = chart.size();
    if let Some(path) = png {
        let mut buf = vec![0u8; size.0 as usize * size.1 as usize * 3];
        chart.draw(BitMapBackend::with_buffer(&mut buf, size).into_drawing_area())?;
        save_png(path, buf, size)?;
    }
    if let Some(path) = svg {
        let mut text = String::new();
        chart.draw(SVGBackend::with_string(&mut text, size).into_drawing_area())?;
        save_text(path, &text)?;
    }
    Ok(())
}

/// Writes the figure as PNG (`png`) and/or SVG (`svg`).
///
/// Errors: [`ChartError::Empty`] if a panel has no finite point; I/O and encoding errors name
/// the file.
pub fn write_figure(f: &Figure, png: Option<&Path>, svg: Option<&Path>) -> Result<(), ChartError> {
    write(f, png, svg)
}

/// A horizontal bar per category (top to bottom in the given order), e.g. per-layer SQNR.
#[derive(Clone, Debug)]
pub struct Bars {
    /// Title over the chart.
    pub title: String,
    /// One label per bar.
    pub categories: Vec<String>,
    /// One value per bar (non-finite: no bar, the label stays).
    pub values: Vec<f64>,
    /// Value axis label, with its unit.
    pub value_label: String,
    /// Colour per bar (index into `legend`).
    pub group: Vec<usize>,
    /// Legend: a label and colour per group.
    pub legend: Vec<(String, Rgb)>,
    /// Width of the chart in pixels; the height follows the number of bars.
    pub width: u32,
}

fn draw_bars<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, b: &Bars) -> Result<(), ChartError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let n = b.values.len();
    if n == 0 || b.categories.len() != n || b.group.len() != n {
        return Err(ChartError::Empty {
            what: format!(
                "bar chart \"{}\" ({n} values, {} labels)",
                b.title,
                b.categories.len()
            ),
        });
    }
    let finite = b.values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Room on the right for the legend beside the longest bars.
    let span = (hi - lo).max(1.0);
    let xr = (lo - if lo < 0.0 { 0.06 * span } else { 0.0 })..(hi + 0.3 * span);
    let longest = b
        .categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(&b.title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size((longest as u32 * 7 + 16).min(b.width / 2))
        // plotters' integer ranges are closed: 0..n-1 is n segments.
        .build_cartesian_2d(xr, (0..n as u32 - 1).into_segmented())
        .map_err(draw_err)?;
    let names = &b.categories;
    chart
        .configure_mesh()
        .x_desc(&b.value_label)
        .x_labels(10)
        .y_labels(n)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| match v {
            // Segment i is drawn top-down: category n-1-i sits at the bottom.
            SegmentValue::CenterOf(i) if (*i as usize) < n => names[n - 1 - *i as usize].clone(),
            _ => String::new(),
        })
        .label_style((FAMILY, 12))
        .axis_desc_style((FAMILY, 15))
        .disable_y_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(draw_err)?;
    for (g, (label, color)) in b.legend.iter().enumerate() {
        let c = color.rgb();
        let rects = (0..n)
            .filter(|&i| b.group[i] == g && b.values[i].is_finite())
            .map(|i| {
                let row = (n - 1 - i) as u32;
                let mut r = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row)),
                        (b.values[i], SegmentValue::Exact(row + 1)),
                    ],
                    c.filled(),
                );
                r.set_margin(2, 2, 0, 0);
                r
            })
            .collect::<Vec<_>>();
        chart
            .draw_series(rects)
            .map_err(draw_err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(190, 190, 190))
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)
}

/// Writes the bar chart as PNG (`png`) and/or SVG (`svg`): `width` × (100 + 16 per bar) pixels.
///
/// Errors: [`ChartError::Empty`] without bars or with lengths that disagree; I/O and encoding
/// errors name the file.
pub fn write_bars(b: &Bars, png: Option<&Path>, svg: Option<&Path>) -> Result<(), ChartError> {
    write(b, png, svg)
}

impl Chart for Bars {
    fn size(&self) -> (u32, u32) {
        (self.width, 100 + 16 * self.values.len() as u32)
    }
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), ChartError> {
        draw_bars(root, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_as_numbers() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(1200.0), "1200");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(81.5), "81.5");
        assert_eq!(tick(4e-4), "4.0e-4");
        assert_eq!(tick(2.5e6), "2.5e6");
    }

    #[test]
    fn one_point_gets_a_non_empty_range() {
        let r = fit([3.0].into_iter()).unwrap();
        assert!(r.start < 3.0 && r.end > 3.0);
        let r = fit([0.8123].into_iter()).unwrap();
        assert!(r.start < 0.8123 && r.end > 0.8123 && r.end - r.start < 0.2);
        assert!(fit([f64::NAN].into_iter()).is_none());
    }
}
