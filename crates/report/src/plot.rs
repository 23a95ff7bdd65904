//! Line charts as self-contained SVG, in one palette and one style.

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// Okabe–Ito colours: distinguishable with colour-vision deficiencies.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("plot `{0}` has no finite points to draw")]
    Empty(String),
    #[error("drawing plot `{title}` failed: {message}")]
    Draw { title: String, message: String },
}

/// One line: `color` indexes [`PALETTE`]; `dashed` for the second role of
/// the same colour (e.g. test beside train).
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: usize,
    pub dashed: bool,
}

#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Logarithmic x axis; points with x ≤ 0 are left out.
    pub log_x: bool,
    /// Logarithmic y axis; points with y ≤ 0 are left out.
    pub log_y: bool,
    /// x counts whole things (epochs): labels only at integers.
    pub integer_x: bool,
    pub series: Vec<Series>,
    pub size: (u32, u32),
}

impl LineChart {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Self {
            title: title.to_string(),
            x_label: x_label.to_string(),
            y_label: y_label.to_string(),
            log_x: false,
            log_y: false,
            integer_x: false,
            series: Vec::new(),
            size: (860, 460),
        }
    }
}

/// One training run for [`history_series`]: its name and its points
/// `(x, train, held-out)`.
pub type History = (String, Vec<(f64, f64, Option<f64>)>);

/// The curves of training runs for one chart: per run (one colour each)
/// the training curve solid and, when every point has one, the held-out
/// curve dashed — named "‹run› train" and "‹run› ‹held_out›", or "‹run›"
/// alone without a held-out curve.
pub fn history_series(runs: &[History], held_out: &str) -> Vec<Series> {
    let mut series = Vec::new();
    for (color, (name, points)) in runs.iter().enumerate() {
        let held: Option<Vec<(f64, f64)>> =
            points.iter().map(|&(x, _, h)| h.map(|v| (x, v))).collect();
        let train = if held.is_some() {
            format!("{name} train")
        } else {
            name.to_string()
        };
        series.push(Series {
            name: train.trim().to_string(),
            points: points.iter().map(|&(x, t, _)| (x, t)).collect(),
            color,
            dashed: false,
        });
        if let Some(points) = held {
            series.push(Series {
                name: format!("{name} {held_out}").trim().to_string(),
                points,
                color,
                dashed: true,
            });
        }
    }
    series
}

fn usable(chart: &LineChart, &(x, y): &(f64, f64)) -> bool {
    x.is_finite() && y.is_finite() && (!chart.log_x || x > 0.0) && (!chart.log_y || y > 0.0)
}

/// Renders `chart` to an SVG document.
pub fn line_chart(chart: &LineChart) -> Result<String, PlotError> {
    let points = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().filter(|p| usable(chart, p)));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Err(PlotError::Empty(chart.title.clone()));
    }
    let (xr, x_log) = if chart.log_x {
        // Room at both ends: plotters rounds log10 of the lower bound up, and
        // log10(0.01) = −1.999… would lose the whole first decade's ticks.
        let (lo, hi) = if x0 == x1 {
            (x0 / 2.0, x1 * 2.0)
        } else {
            (x0 / 1.1, x1 * 1.1)
        };
        (lo..hi, true)
    } else if x0 == x1 {
        ((x0 - 0.5)..(x1 + 0.5), false)
    } else {
        (x0..x1, false)
    };
    let (ylo, yhi) = if chart.log_y {
        if y0 == y1 {
            (y0 / 2.0, y1 * 2.0)
        } else {
            (y0 / 1.5, y1 * 1.5)
        }
    } else {
        let pad = if y0 == y1 { 0.5 } else { (y1 - y0) * 0.05 };
        (y0 - pad, y1 + pad)
    };
    let mut svg = String::new();
    let result = match (x_log, chart.log_y) {
        (false, false) => draw(chart, &mut svg, xr, ylo..yhi),
        (false, true) => draw(chart, &mut svg, xr, (ylo..yhi).log_scale()),
        (true, false) => draw(chart, &mut svg, xr.log_scale(), ylo..yhi),
        (true, true) => draw(chart, &mut svg, xr.log_scale(), (ylo..yhi).log_scale()),
    };
    result.map_err(|message| PlotError::Draw {
        title: chart.title.clone(),
        message,
    })?;
    Ok(svg)
}

/// Tick labels: plain numbers in a readable range, powers of ten on log axes.
fn tick(v: f64, log: bool) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    // On log axes only 1, 2 and 5 times a power of ten get a label, so
    // labels never crowd.
    let mantissa = a / 10f64.powf(a.log10().floor());
    if log && ![1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6) {
        return String::new();
    }
    if log && !(1e-2..1e4).contains(&a) {
        return format!("{v:.0e}");
    }
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Width of the legend column: room for the longest label at ~7 px a character.
fn legend_width(chart: &LineChart) -> u32 {
    let longest = chart
        .series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0) as u32;
    (50 + 7 * longest).clamp(150, chart.size.0 / 2)
}

fn draw<X, Y>(chart: &LineChart, out: &mut String, x: X, y: Y) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let root = SVGBackend::with_string(out, chart.size).into_drawing_area();
    let e = |err: DrawingAreaErrorKind<_>| err.to_string();
    root.fill(&WHITE).map_err(e)?;
    let titled = root.titled(&chart.title, ("sans-serif", 20)).map_err(e)?;
    let with_legend = chart.series.len() > 1;
    let (plot_area, legend_area) = if with_legend {
        titled.split_horizontally(chart.size.0.saturating_sub(legend_width(chart)))
    } else {
        titled.split_horizontally(chart.size.0)
    };
    let mut ctx = ChartBuilder::on(&plot_area)
        .margin(10)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(e)?;
    let log = chart.log_y;
    let x_labels = if chart.integer_x {
        let xs = chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        ((hi - lo).round().max(0.0) as usize + 1).min(11)
    } else {
        10
    };
    let x_tick = |v: &f64| {
        if chart.integer_x && (v - v.round()).abs() > 1e-9 {
            String::new()
        } else {
            tick(*v, chart.log_x)
        }
    };
    ctx.configure_mesh()
        .x_labels(x_labels)
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_label_formatter(&x_tick)
        .y_label_formatter(&|v| tick(*v, log))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(if chart.log_x {
            // plotters draws a dense block of minor lines in one decade of a log x axis.
            ShapeStyle::from(TRANSPARENT)
        } else {
            ShapeStyle::from(RGBColor(238, 238, 238))
        })
        .draw()
        .map_err(e)?;
    for s in &chart.series {
        let style = PALETTE[s.color % PALETTE.len()].stroke_width(2);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| usable(chart, p))
            .collect();
        if s.dashed {
            ctx.draw_series(DashedLineSeries::new(pts, 6, 4, style))
                .map_err(e)?;
        } else {
            ctx.draw_series(LineSeries::new(pts, style)).map_err(e)?;
        }
    }
    if with_legend {
        for (i, s) in chart.series.iter().enumerate() {
            let y = 40 + 22 * i as i32;
            let style = PALETTE[s.color % PALETTE.len()].stroke_width(2);
            let line: Vec<(i32, i32)> = vec![(8, y), (36, y)];
            if s.dashed {
                legend_area
                    .draw(&DashedPathElement::new(line, 5, 3, style))
                    .map_err(e)?;
            } else {
                legend_area
                    .draw(&PathElement::new(line, style))
                    .map_err(e)?;
            }
            legend_area
                .draw(&Text::new(
                    s.name.clone(),
                    (42, y - 7),
                    ("sans-serif", 13).into_font(),
                ))
                .map_err(e)?;
        }
    }
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_series_pair_train_and_held_out_by_colour() {
        let runs: Vec<History> = vec![
            (
                "sgd".into(),
                vec![(0.0, 1.0, Some(1.5)), (1.0, 0.5, Some(0.9))],
            ),
            ("adam".into(), vec![(0.0, 2.0, None), (1.0, 1.0, None)]),
            ("".into(), vec![(1.0, 0.3, Some(0.4))]),
        ];
        let s = history_series(&runs, "test");
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["sgd train", "sgd test", "adam", "train", "test"]);
        let roles: Vec<(usize, bool)> = s.iter().map(|s| (s.color, s.dashed)).collect();
        assert_eq!(
            roles,
            [(0, false), (0, true), (1, false), (2, false), (2, true)]
        );
        assert_eq!(s[1].points, [(0.0, 1.5), (1.0, 0.9)]);
    }

    #[test]
    fn draws_labelled_series_and_skips_nonpositive_points_on_log_axes() {
        let mut chart = LineChart::new("Gradient norms", "layer l", "δ_l");
        chart.log_y = true;
        chart.series.push(Series {
            name: "elu/he".into(),
            points: vec![(1.0, 1e-3), (2.0, 1e-1), (3.0, 0.0)],
            color: 0,
            dashed: false,
        });
        chart.series.push(Series {
            name: "tanh/he".into(),
            points: vec![(1.0, 1e-2), (2.0, 1.0)],
            color: 1,
            dashed: true,
        });
        let svg = line_chart(&chart).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in ["Gradient norms", "layer l", "elu/he", "tanh/he"] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn a_chart_without_points_is_an_error() {
        let mut chart = LineChart::new("empty", "x", "y");
        chart.log_y = true;
        chart.series.push(Series {
            name: "zeros".into(),
            points: vec![(1.0, 0.0)],
            color: 0,
            dashed: false,
        });
        assert!(matches!(line_chart(&chart), Err(PlotError::Empty(_))));
    }
}
