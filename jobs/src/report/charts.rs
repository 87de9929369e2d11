//! The report's charts as inline SVG (plotters, SVG backend only): metric
//! trends over the last periods, and bar charts for the sentiment and risk
//! distributions. SVG text, not pixels, so the charts are sharp at any
//! width and weigh a few kilobytes in an email.

use plotters::prelude::*;

/// Width and height of every chart, in SVG units (scaled to the column).
const SIZE: (u32, u32) = (560, 220);

fn rgb(hex: &str) -> RGBColor {
    let c = |i: usize| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("80"), 16).unwrap_or(128);
    RGBColor(c(1), c(3), c(5))
}

/// Makes plotters' fixed-size SVG shrink with its container.
fn responsive(svg: String, title: &str) -> String {
    let title = title.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{title}\" style=\"max-width:100%;height:auto;display:block\" "),
        1,
    )
}

/// A line chart of `values` (None = no data, a gap) over `labels`.
pub fn trend(title: &str, labels: &[String], values: &[Option<f64>], color: &str) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let known: Vec<f64> = values.iter().flatten().copied().collect();
        let hi = known.iter().copied().fold(0.0f64, f64::max);
        let lo = known.iter().copied().fold(0.0f64, f64::min);
        let top = if hi <= lo { lo + 1.0 } else { hi + (hi - lo) * 0.1 };
        let n = values.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(-0.5f64..(n - 0.5), lo..top)
            .map_err(|e| e.to_string())?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            labels
                .get(i as usize)
                .map(|l| l.rsplit('-').next().unwrap_or(l).to_owned())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .x_labels(values.len().max(2))
            .x_label_formatter(&label)
            .y_labels(5)
            .light_line_style(RGBColor(235, 235, 235))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        let color = rgb(color);
        // Consecutive known values form one line; a gap splits it.
        let mut run: Vec<(f64, f64)> = Vec::new();
        let mut runs = Vec::new();
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(y) => run.push((i as f64, *y)),
                None => runs.push(std::mem::take(&mut run)),
            }
        }
        runs.push(run);
        for r in runs.into_iter().filter(|r| !r.is_empty()) {
            chart
                .draw_series(LineSeries::new(r.clone(), color.stroke_width(3)))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(r.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(responsive(svg, title))
}

/// A bar chart: one bar per `(label, value, colour)`.
pub fn bars(title: &str, items: &[(String, f64, String)]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let hi = items.iter().map(|i| i.1).fold(0.0f64, f64::max);
        let top = if hi <= 0.0 { 1.0 } else { hi * 1.15 };
        let n = items.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(-0.5f64..(n - 0.5), 0f64..top)
            .map_err(|e| e.to_string())?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            items.get(i as usize).map(|it| it.0.clone()).unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(items.len().max(2))
            .x_label_formatter(&label)
            .y_labels(5)
            .light_line_style(RGBColor(235, 235, 235))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(items.iter().enumerate().map(|(i, (_, v, c))| {
                let x = i as f64;
                Rectangle::new([(x - 0.3, 0.0), (x + 0.3, *v)], rgb(c).filled())
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(responsive(svg, title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_standalone_svg_with_their_labels() {
        let labels: Vec<String> = (41..49).map(|w| format!("2026-W{w}")).collect();
        let mut values: Vec<Option<f64>> = (0..8).map(|i| Some(f64::from(i) * 2.0)).collect();
        values[3] = None;
        let svg = trend("Tasks completed", &labels, &values, "#e07a1f").unwrap();
        assert!(svg.starts_with("<svg role=\"img\""), "{}", &svg[..80]);
        assert!(svg.contains("W48") && svg.contains("Tasks completed"));
        let svg = bars(
            "Risk",
            &[
                ("LOW".into(), 3.0, "#2e7d32".into()),
                ("HIGH".into(), 1.0, "#c62828".into()),
            ],
        )
        .unwrap();
        assert!(svg.contains("<rect") && svg.contains("HIGH"));
    }
}
