//! Pictures of a training or evaluation run, as standalone SVG files: the ROC and DET curves,
//! the score distributions of real and fake clips, and the loss/accuracy curves per epoch.
//!
//! They exist so that a person can judge a model at a glance (is it separating the classes, is
//! it over-fitting, where should the threshold sit?) from the run's output folder, in any
//! browser, without a notebook.
//!
//! SVG is written with `plotters`' SVG backend built without its `ttf` feature: text becomes
//! `<text>` elements that the viewer renders, so no system fonts (and no font-kit/freetype) are
//! needed to draw, and rendering is identical on a headless server, in CI and on a laptop.
//! Each plot is rendered into memory first and written in one go, so a failed draw never leaves
//! a half-written file behind and I/O errors are reported as such.
//!
//! Inputs are never trusted to be clean: non-finite values are skipped, out-of-range scores are
//! clamped into the outer bins, and empty inputs give an empty (but valid, titled) plot rather
//! than an error, so a report can always be produced.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::metrics::{sanitize_score, RocPoint};

/// Size of the single-panel plots, in pixels (SVG user units).
const SIZE: (u32, u32) = (800, 600);
/// Size of the two-panel training-curve plot.
const CURVES_SIZE: (u32, u32) = (800, 900);
/// Bins of the score histogram over `[0, 1]`.
const BINS: usize = 20;
const FONT: &str = "sans-serif";

/// "Fake" and the model's own curve (a colour-blind-safe pair with [`REAL`]).
const FAKE: RGBColor = RGBColor(214, 39, 40);
/// "Real", and training as opposed to validation.
const REAL: RGBColor = RGBColor(31, 119, 180);
/// Reference lines (chance, FPR = FNR).
const REFERENCE: RGBColor = RGBColor(140, 140, 140);

/// What went wrong writing a plot; every variant names the file, since a run writes several.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters refused to draw (its error is kept as text because its error type is generic
    /// over the backend and not worth exposing).
    #[error("drawing plot {}: {message}", path.display())]
    Draw {
        /// The plot being drawn.
        path: PathBuf,
        /// plotters' error message.
        message: String,
    },
    /// The SVG could not be written (or its folder created).
    #[error("writing plot {}: {source}", path.display())]
    Io {
        /// The file (or folder) that could not be written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// One epoch's numbers, as the training loop records them: kept serialisable so that the
/// curves can be redrawn later from a run's JSON history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    /// Epoch number, as the training loop counts (0- or 1-based, either plots fine).
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Validation loss after the epoch.
    pub val_loss: f64,
    /// Training accuracy as a fraction in `[0, 1]`.
    pub train_accuracy: f64,
    /// Validation accuracy as a fraction in `[0, 1]`.
    pub val_accuracy: f64,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn StdError>>;

/// Renders `draw` into an in-memory SVG of `size` and writes it to `path`, creating the parent
/// folder if needed: one place for error mapping and file handling.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<(), PlotError> {
    let draw_error = |e: Box<dyn StdError>| PlotError::Draw {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(e.into()))?;
        draw(&root).map_err(draw_error)?;
        root.present().map_err(|e| draw_error(e.into()))?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| PlotError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, svg).map_err(|source| PlotError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A short horizontal line in `style`, for legend entries of line series.
fn legend_line(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style)
}

/// A small filled square in `style`, for legend entries of bars and markers.
fn legend_box(style: ShapeStyle) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], style)
}

/// Draws the legend of `chart` in the corner where curves of this kind rarely go.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()?;
    Ok(())
}

/// One square plot of a curve against its dashed diagonal, both axes `0..max`: the common shape
/// of the ROC and DET plots. `marker` adds a labelled point (the EER on the DET plot).
struct DiagonalPlot<'a> {
    title: &'a str,
    max: f64,
    x_desc: &'a str,
    y_desc: &'a str,
    diagonal_label: &'a str,
    points: Vec<(f64, f64)>,
    marker: Option<((f64, f64), String)>,
    legend_at: SeriesLabelPosition,
}

impl DiagonalPlot<'_> {
    fn draw(self, path: &Path) -> Result<(), PlotError> {
        render(path, SIZE, |root| {
            let mut chart = ChartBuilder::on(root)
                .caption(self.title, (FONT, 26))
                .margin(20)
                .x_label_area_size(50)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..self.max, 0f64..self.max)?;
            chart
                .configure_mesh()
                .x_desc(self.x_desc)
                .y_desc(self.y_desc)
                .axis_desc_style((FONT, 16))
                .draw()?;

            let diagonal = REFERENCE.stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, 0.0), (self.max, self.max)],
                    6,
                    4,
                    diagonal,
                ))?
                .label(self.diagonal_label)
                .legend(legend_line(diagonal));

            let curve = FAKE.stroke_width(2);
            chart
                .draw_series(LineSeries::new(self.points, curve))?
                .label("model")
                .legend(legend_line(curve));

            if let Some((at, label)) = self.marker {
                let marker = BLACK.filled();
                chart
                    .draw_series(std::iter::once(Circle::new(at, 6, marker)))?
                    .label(label)
                    .legend(legend_box(marker));
            }
            legend(&mut chart, self.legend_at)
        })
    }
}

/// Draws the ROC curve against the chance diagonal, with the AUC in the title, so that how far
/// the model is from guessing, and at which false-positive cost, is visible at once. An empty
/// `roc` (one class missing) gives the axes and the diagonal only.
pub fn roc_svg(path: &Path, roc: &[RocPoint], auc: Option<f64>) -> Result<(), PlotError> {
    let title = match auc {
        Some(a) if a.is_finite() => format!("ROC curve (AUC = {a:.4})"),
        _ => "ROC curve (AUC undefined)".to_owned(),
    };
    DiagonalPlot {
        title: &title,
        max: 1.0,
        x_desc: "False positive rate (real called fake)",
        y_desc: "True positive rate (fakes caught)",
        diagonal_label: "chance",
        points: roc
            .iter()
            .filter(|p| p.fpr.is_finite() && p.tpr.is_finite())
            .map(|p| (p.fpr, p.tpr))
            .collect(),
        marker: None,
        legend_at: SeriesLabelPosition::LowerRight,
    }
    .draw(path)
}

/// Draws the DET curve (false positives against misses, both in percent) with the equal error
/// rate marked where it meets the FPR = FNR diagonal: the view in which spoofing detectors are
/// usually compared. `det` is what `metrics::det_curve` returns.
pub fn det_svg(path: &Path, det: &[(f64, f64)], eer: Option<f64>) -> Result<(), PlotError> {
    let eer = eer.filter(|e| e.is_finite());
    let title = match eer {
        Some(e) => format!("DET curve (EER = {:.2}%)", e * 100.0),
        None => "DET curve (EER undefined)".to_owned(),
    };
    DiagonalPlot {
        title: &title,
        max: 100.0,
        x_desc: "False positive rate, % (real called fake)",
        y_desc: "False negative rate, % (fakes missed)",
        diagonal_label: "FPR = FNR",
        points: det
            .iter()
            .filter(|(fpr, fnr)| fpr.is_finite() && fnr.is_finite())
            .map(|&(fpr, fnr)| (fpr * 100.0, fnr * 100.0))
            .collect(),
        marker: eer.map(|e| ((e * 100.0, e * 100.0), format!("EER {:.2}%", e * 100.0))),
        legend_at: SeriesLabelPosition::UpperRight,
    }
    .draw(path)
}

/// Share of each class per bin (in percent of that class), so that real and fake compare even
/// when one class outnumbers the other; the counts go in the legend.
fn class_histograms(labels: &[bool], scores: &[f32]) -> ([f64; BINS], [f64; BINS], usize, usize) {
    let mut real = [0usize; BINS];
    let mut fake = [0usize; BINS];
    for (&is_fake, &score) in labels.iter().zip(scores) {
        // Scores outside [0, 1] land in the outer bins; 1.0 belongs to the last bin.
        let s = f64::from(sanitize_score(score)).clamp(0.0, 1.0);
        let bin = ((s * BINS as f64) as usize).min(BINS - 1);
        if is_fake {
            fake[bin] += 1;
        } else {
            real[bin] += 1;
        }
    }
    let (n_real, n_fake): (usize, usize) = (real.iter().sum(), fake.iter().sum());
    let share = |counts: [usize; BINS], n: usize| {
        counts.map(|c| {
            if n == 0 {
                0.0
            } else {
                100.0 * c as f64 / n as f64
            }
        })
    };
    (share(real, n_real), share(fake, n_fake), n_real, n_fake)
}

/// Draws the score distributions of real and fake clips, overlaid, with the decision threshold:
/// shows how much the classes overlap and whether the threshold sits in the gap, which no
/// single metric does. 20 bins over `[0, 1]`; NaN scores count as `0.5`, like in
/// `metrics`; lengths that differ use the shorter.
pub fn score_histogram_svg(
    path: &Path,
    labels: &[bool],
    scores: &[f32],
    threshold: f32,
) -> Result<(), PlotError> {
    let (real, fake, n_real, n_fake) = class_histograms(labels, scores);
    let tallest = real.iter().chain(&fake).copied().fold(0.0, f64::max);
    // Headroom above the tallest bar for the legend.
    let y_max = if tallest > 0.0 { tallest * 1.3 } else { 100.0 };
    let title = format!("Score distribution (threshold {threshold:.2})");
    render(path, SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(&title, (FONT, 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..1f64, 0f64..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("Predicted probability of fake")
            .y_desc("Share of class, %")
            .axis_desc_style((FONT, 16))
            .draw()?;

        let width = 1.0 / BINS as f64;
        for (name, shares, n, color) in
            [("real", &real, n_real, REAL), ("fake", &fake, n_fake, FAKE)]
        {
            let fill = color.mix(0.45).filled();
            let bars = shares
                .iter()
                .enumerate()
                .filter(|(_, &h)| h > 0.0)
                .map(|(i, &h)| {
                    let x0 = i as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, h)], fill)
                });
            chart
                .draw_series(bars)?
                .label(format!("{name} (n = {n})"))
                .legend(legend_box(fill));
        }

        let t = f64::from(threshold);
        if (0.0..=1.0).contains(&t) {
            let line = BLACK.stroke_width(2);
            chart
                .draw_series(LineSeries::new([(t, 0.0), (t, y_max)], line))?
                .label(format!("threshold {threshold:.2}"))
                .legend(legend_line(line));
        }

        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// `lo..hi` covering the finite values, widened so it is never empty: plotters needs a range
/// of positive width.
fn value_range(values: impl Iterator<Item = f64>, floor: f64, min_top: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((floor, min_top), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi > lo {
        (lo, hi)
    } else {
        (lo, lo + 1.0)
    }
}

/// One named line of a training-curve panel, already filtered to finite values.
struct Curve {
    name: &'static str,
    color: RGBColor,
    points: Vec<(usize, f64)>,
}

/// The two curves of a panel, in the colours every panel uses.
fn train_and_validation(train: Vec<(usize, f64)>, val: Vec<(usize, f64)>) -> [Curve; 2] {
    [
        Curve {
            name: "train",
            color: REAL,
            points: train,
        },
        Curve {
            name: "validation",
            color: FAKE,
            points: val,
        },
    ]
}

/// Draws one panel (loss or accuracy) of the training curves: training and validation, each as
/// a line with a marker per epoch (so a single epoch still shows).
fn curve_panel(
    area: &Area<'_>,
    title: &str,
    y_desc: &str,
    y_range: (f64, f64),
    epochs: (usize, usize),
    curves: [Curve; 2],
    legend_at: SeriesLabelPosition,
) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(epochs.0..epochs.1, y_range.0..y_range.1)?;
    chart
        .configure_mesh()
        .x_desc("Epoch")
        .y_desc(y_desc)
        .axis_desc_style((FONT, 16))
        .draw()?;
    for Curve {
        name,
        color,
        points,
    } in curves
    {
        let line = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), line))?
            .label(name)
            .legend(legend_line(line));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    legend(&mut chart, legend_at)
}

/// Draws loss (top) and accuracy (bottom) per epoch for training and validation, the view that
/// shows over-fitting and when to stop. Non-finite values (a diverged epoch) are left out
/// rather than failing the whole plot; accuracies are shown in percent.
pub fn training_curves_svg(path: &Path, epochs: &[EpochPoint]) -> Result<(), PlotError> {
    let first = epochs.iter().map(|e| e.epoch).min().unwrap_or(0);
    let last = epochs.iter().map(|e| e.epoch).max().unwrap_or(0);
    let x = (first, if last > first { last } else { first + 1 });

    let finite = |f: fn(&EpochPoint) -> f64, scale: f64| -> Vec<(usize, f64)> {
        epochs
            .iter()
            .map(|e| (e.epoch, f(e) * scale))
            .filter(|(_, v)| v.is_finite())
            .collect()
    };
    let train_loss = finite(|e| e.train_loss, 1.0);
    let val_loss = finite(|e| e.val_loss, 1.0);
    let train_acc = finite(|e| e.train_accuracy, 100.0);
    let val_acc = finite(|e| e.val_accuracy, 100.0);

    let (lo, hi) = value_range(
        train_loss.iter().chain(&val_loss).map(|p| p.1),
        0.0,
        f64::MIN_POSITIVE,
    );
    let loss_range = (lo, if hi > 0.0 { hi * 1.05 } else { hi });
    let acc_range = value_range(train_acc.iter().chain(&val_acc).map(|p| p.1), 0.0, 100.0);

    render(path, CURVES_SIZE, |root| {
        let body = root.titled("Training curves", (FONT, 26))?;
        let panels = body.split_evenly((2, 1));
        curve_panel(
            &panels[0],
            "Loss",
            "Loss",
            loss_range,
            x,
            train_and_validation(train_loss, val_loss),
            SeriesLabelPosition::UpperRight,
        )?;
        curve_panel(
            &panels[1],
            "Accuracy",
            "Accuracy, %",
            acc_range,
            x,
            train_and_validation(train_acc, val_acc),
            SeriesLabelPosition::LowerRight,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::metrics::{det_curve, equal_error_rate, roc_auc, roc_curve};
    use super::*;

    /// A small data set with overlap, so every curve has some shape.
    fn data() -> (Vec<bool>, Vec<f32>) {
        let labels = vec![
            true, false, true, true, false, false, true, false, true, false,
        ];
        let scores = vec![0.95, 0.8, 0.7, 0.62, 0.41, 0.3, 0.25, 0.1, 1.0, 0.0];
        (labels, scores)
    }

    /// Reads `path` and checks it is a complete, non-trivial SVG that contains `needle`.
    fn assert_svg(path: &Path, needle: &str) -> String {
        let svg = std::fs::read_to_string(path).unwrap();
        assert!(svg.len() > 1000, "suspiciously small SVG: {svg}");
        assert!(svg.trim_start().starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<text"), "no text elements");
        assert!(svg.contains(needle), "{needle:?} not in the SVG");
        svg
    }

    #[test]
    fn roc_plot() {
        let dir = tempfile::tempdir().unwrap();
        let (labels, scores) = data();
        let roc = roc_curve(&labels, &scores);
        let auc = roc_auc(&labels, &scores);
        let path = dir.path().join("roc.svg");
        roc_svg(&path, &roc, auc).unwrap();
        let svg = assert_svg(&path, &format!("ROC curve (AUC = {:.4})", auc.unwrap()));
        assert!(svg.contains("<polyline"), "no curve drawn");
    }

    #[test]
    fn det_plot_marks_eer() {
        let dir = tempfile::tempdir().unwrap();
        let (labels, scores) = data();
        let det = det_curve(&roc_curve(&labels, &scores));
        let eer = equal_error_rate(&labels, &scores).map(|e| e.eer);
        let path = dir.path().join("det.svg");
        det_svg(&path, &det, eer).unwrap();
        let title = format!("DET curve (EER = {:.2}%)", eer.unwrap() * 100.0);
        let svg = assert_svg(&path, &title);
        assert!(svg.contains("<circle"), "EER not marked");
    }

    #[test]
    fn histogram_plot() {
        let dir = tempfile::tempdir().unwrap();
        let (labels, scores) = data();
        let path = dir.path().join("hist.svg");
        score_histogram_svg(&path, &labels, &scores, 0.5).unwrap();
        let svg = assert_svg(&path, "Score distribution (threshold 0.50)");
        assert!(svg.contains("real (n = 5)") && svg.contains("fake (n = 5)"));
        assert!(svg.contains("<rect"));
    }

    #[test]
    fn histogram_bins() {
        let labels = [false, false, true, true, true, false];
        let scores = [0.0, 0.049, 1.0, 0.97, f32::NAN, -3.0];
        let (real, fake, n_real, n_fake) = class_histograms(&labels, &scores);
        assert_eq!((n_real, n_fake), (3, 3));
        assert_eq!(real[0], 100.0);
        assert!((fake[19] - 200.0 / 3.0).abs() < 1e-9);
        assert!((fake[10] - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn training_curves_plot() {
        let dir = tempfile::tempdir().unwrap();
        let epochs: Vec<EpochPoint> = (1..=6)
            .map(|epoch| {
                let e = epoch as f64;
                EpochPoint {
                    epoch,
                    train_loss: 0.7 / e,
                    val_loss: 0.6 / e.sqrt(),
                    train_accuracy: 1.0 - 0.4 / e,
                    val_accuracy: if epoch == 3 { f64::NAN } else { 0.9 - 0.3 / e },
                }
            })
            .collect();
        let path = dir.path().join("curves.svg");
        training_curves_svg(&path, &epochs).unwrap();
        let svg = assert_svg(&path, "Training curves");
        assert!(svg.contains("Loss") && svg.contains("Accuracy, %"));
        assert!(svg.contains("validation"));
    }

    #[test]
    fn degenerate_inputs_still_plot() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        roc_svg(&d.join("roc.svg"), &[], None).unwrap();
        assert_svg(&d.join("roc.svg"), "ROC curve (AUC undefined)");
        det_svg(&d.join("det.svg"), &[], Some(f64::NAN)).unwrap();
        assert_svg(&d.join("det.svg"), "DET curve (EER undefined)");
        score_histogram_svg(&d.join("hist.svg"), &[], &[], f32::NAN).unwrap();
        assert_svg(&d.join("hist.svg"), "Score distribution");
        training_curves_svg(&d.join("none.svg"), &[]).unwrap();
        assert_svg(&d.join("none.svg"), "Training curves");
        let one = EpochPoint {
            epoch: 0,
            train_loss: f64::INFINITY,
            val_loss: f64::NAN,
            train_accuracy: 0.5,
            val_accuracy: 0.5,
        };
        training_curves_svg(&d.join("one.svg"), &[one]).unwrap();
        assert_svg(&d.join("one.svg"), "Training curves");
    }

    #[test]
    fn creates_missing_folders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/roc.svg");
        roc_svg(&path, &[], Some(0.5)).unwrap();
        assert_svg(&path, "ROC curve (AUC = 0.5000)");
    }

    #[test]
    fn write_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should go: writing must fail, not panic.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        let err = roc_svg(&path, &[], None).unwrap_err();
        assert!(matches!(err, PlotError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("taken"), "{err}");
    }

    #[test]
    fn epoch_point_round_trips_through_serde() {
        let p = EpochPoint {
            epoch: 2,
            train_loss: 0.25,
            val_loss: 0.5,
            train_accuracy: 0.75,
            val_accuracy: 0.625,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<EpochPoint>(&json).unwrap(), p);
    }
}
