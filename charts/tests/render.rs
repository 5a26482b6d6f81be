//! Renders real charts and reads them back: the PNG has the stated size and the series'
//! colours where the data put them; the SVG carries the title, axis labels, legend and ticks.

use charts::{Bars, Figure, Legend, Mark, Panel, Rgb, Series};

fn figure(points: usize) -> Figure {
    let loss: Vec<(f64, f64)> = (0..points)
        .map(|i| (i as f64, 2.3 * (-(i as f64) / 40.0).exp()))
        .collect();
    Figure {
        title: "test run".into(),
        columns: 2,
        panel_size: (480, 320),
        panels: vec![
            Panel {
                title: "training loss".into(),
                x_label: "step".into(),
                y_label: "cross-entropy".into(),
                series: vec![Series {
                    label: "train loss".into(),
                    points: loss,
                    color: Rgb::RED,
                    mark: Mark::Line,
                    width: 2,
                }],
                y_range: None,
                legend: Legend::UpperRight,
                x_integer: false,
            },
            Panel {
                title: "accuracy".into(),
                x_label: "epoch".into(),
                y_label: "top-1 (%)".into(),
                series: vec![Series {
                    label: "test top-1".into(),
                    points: vec![(1.0, 71.25)],
                    color: Rgb::BLUE,
                    mark: Mark::LineAndDots,
                    width: 2,
                }],
                y_range: None,
                legend: Legend::LowerRight,
                x_integer: true,
            },
        ],
    }
}

fn count(img: &image::RgbImage, c: Rgb, x: std::ops::Range<u32>) -> usize {
    img.enumerate_pixels()
        .filter(|(px, _, p)| x.contains(px) && p.0 == [c.0, c.1, c.2])
        .count()
}

#[test]
fn png_and_svg_hold_what_was_drawn() {
    let dir = std::env::temp_dir().join(format!("charts-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (png, svg) = (dir.join("f.png"), dir.join("f.svg"));
    charts::write_figure(&figure(200), Some(&png), Some(&svg)).unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (960, 360));
    // The loss line is red, in the left panel only; the single accuracy point a blue dot on
    // the right.
    assert!(count(&img, Rgb::RED, 0..480) > 200, "no loss line");
    assert_eq!(count(&img, Rgb::RED, 480..960), 0);
    let blue = count(&img, Rgb::BLUE, 480..960);
    assert!(
        (20..400).contains(&blue),
        "{blue} blue pixels: one dot and its legend"
    );
    // Text was rasterised (dark grey/black glyph pixels in the title strip).
    let dark = img
        .enumerate_pixels()
        .filter(|(_, y, p)| *y < 40 && p.0.iter().all(|&v| v < 96))
        .count();
    assert!(dark > 50, "title not drawn ({dark} dark pixels)");
    let text = std::fs::read_to_string(&svg).unwrap();
    let texts: Vec<&str> = text
        .split("<text")
        .skip(1)
        .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
        .collect();
    for s in [
        "test run",
        "training loss",
        "cross-entropy",
        "step",
        "epoch",
        "top-1 (%)",
        "train loss",
        "test top-1",
        "200",
        "1",
    ] {
        assert!(texts.contains(&s), "SVG lacks {s:?}: {texts:?}");
    }
    // The epoch axis labels whole epochs only.
    assert!(
        !texts.contains(&"0.8") && !texts.contains(&"1.2"),
        "{texts:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_panel_is_named() {
    let mut f = figure(10);
    f.panels[1].series[0].points = vec![(1.0, f64::NAN)];
    let e = charts::write_figure(&f, None, Some(&std::env::temp_dir().join("never.svg")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"accuracy\""), "{e}");
}

#[test]
fn bars_are_one_per_layer_top_down() {
    let dir = std::env::temp_dir().join(format!("charts-bars-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("b.png");
    let names: Vec<String> = (0..12).map(|i| format!("stages.{i}.x")).collect();
    let values: Vec<f64> = (0..12).map(|i| 10.0 + i as f64).collect();
    let b = Bars {
        title: "SQNR".into(),
        categories: names,
        values,
        value_label: "SQNR (dB)".into(),
        group: (0..12).map(|i| (i < 2) as usize).collect(),
        legend: vec![("layer".into(), Rgb::BLUE), ("lowest".into(), Rgb::RED)],
        width: 800,
    };
    charts::write_bars(&b, Some(&png), None).unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 100 + 16 * 12));
    // The two "lowest" bars are red and at the top; every bar's length grows with its value,
    // so the longest blue row is the last one.
    let rows_of = |c: Rgb| -> Vec<u32> {
        (0..img.height())
            .filter(|&y| {
                (0..img.width())
                    .filter(|&x| img.get_pixel(x, y).0 == [c.0, c.1, c.2])
                    .count()
                    > 30
            })
            .collect()
    };
    let (red, blue) = (rows_of(Rgb::RED), rows_of(Rgb::BLUE));
    assert!(!red.is_empty() && !blue.is_empty());
    assert!(red.iter().max() < blue.iter().min(), "red bars not on top");
    let len = |y: u32| {
        (0..img.width())
            .filter(|&x| img.get_pixel(x, y).0 == [Rgb::BLUE.0, Rgb::BLUE.1, Rgb::BLUE.2])
            .count()
    };
    assert!(len(*blue.last().unwrap()) > len(*blue.first().unwrap()));
    std::fs::remove_dir_all(&dir).unwrap();
}
