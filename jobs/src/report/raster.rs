//! The e-mail version of a report's HTML. Gmail and Outlook do not render
//! inline SVG, so each chart of the stored HTML (which browsers, Chromium's
//! PDF and the API keep as SVG) is rasterised to a PNG (resvg, the same SVG
//! that plotters drew) and referenced as `cid:` from an `<img>`; the PNGs
//! travel in the email as inline parts of `multipart/related`.
//!
//! Text needs fonts: the system's, loaded once per process (fontconfig's
//! directories, e.g. Debian's `fonts-dejavu-core`), with the generic
//! `sans-serif` that plotters writes mapped to the first family found of a
//! short list. Without any font the labels are missing from the PNGs; a
//! chart that cannot be rasterised at all stays SVG. CPU-bound: callers run
//! it on the blocking pool.

use std::sync::{Arc, LazyLock};

use resvg::usvg::fontdb::Database;
use resvg::{tiny_skia, usvg};

use crate::mail::InlinePart;

/// Pixels per SVG unit: sharp on high-density screens, ~20-40 kB a chart.
const SCALE: f32 = 2.0;

/// Families tried, in order, for the generic `sans-serif`.
const SANS: [&str; 6] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "Arial",
    "Helvetica",
    "FreeSans",
];

static FONTS: LazyLock<Arc<Database>> = LazyLock::new(|| {
    let mut db = Database::new();
    db.load_system_fonts();
    let families: Vec<String> = db
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .collect();
    let sans = SANS
        .iter()
        .find(|s| families.iter().any(|f| f == *s))
        .map(|s| (*s).to_owned())
        .or_else(|| families.first().cloned());
    match sans {
        Some(family) => db.set_sans_serif_family(family),
        None => tracing::warn!("no system fonts found: report charts in emails will have no labels"),
    }
    Arc::new(db)
});

/// One chart as a PNG.
pub fn png(svg: &str) -> Result<Vec<u8>, String> {
    let options = usvg::Options {
        fontdb: FONTS.clone(),
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| e.to_string())?;
    let size = tree.size();
    let (w, h) = ((size.width() * SCALE).ceil(), (size.height() * SCALE).ceil());
    let mut pixmap = tiny_skia::Pixmap::new(w as u32, h as u32).ok_or_else(|| format!("bad size {w}x{h}"))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(SCALE, SCALE),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(|e| e.to_string())
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// `html` with every `<svg>…</svg>` replaced by an `<img src="cid:…">` of
/// its PNG, and those PNGs as inline parts. Content ids are
/// `chartN.<tag>@kairos.invalid` (`tag`: the report id, so they are unique).
pub fn email_html(html: &str, tag: &str) -> (String, Vec<InlinePart>) {
    let mut out = String::with_capacity(html.len());
    let mut parts = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let Some(len) = rest[start..].find("</svg>") else {
            break;
        };
        let end = start + len + "</svg>".len();
        let svg = &rest[start..end];
        out.push_str(&rest[..start]);
        match png(svg) {
            Ok(bytes) => {
                let n = parts.len() + 1;
                let content_id = format!("chart{n}.{tag}@kairos.invalid");
                let open = &svg[..svg.find('>').unwrap_or(svg.len())];
                let (w, h) = (
                    attr(open, "width").unwrap_or("560"),
                    attr(open, "height").unwrap_or("220"),
                );
                // Already escaped for an attribute by `charts`.
                let alt = attr(open, "aria-label").unwrap_or("");
                out.push_str(&format!(
                    "<img src=\"cid:{content_id}\" width=\"{w}\" height=\"{h}\" alt=\"{alt}\" \
                     style=\"max-width:100%;height:auto;display:block;border:0\">"
                ));
                parts.push(InlinePart {
                    filename: format!("chart{n}.png"),
                    content_id,
                    content_type: "image/png".into(),
                    bytes,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "a report chart could not be rasterised; the email keeps its SVG");
                out.push_str(svg);
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    (out, parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts;

    #[test]
    fn charts_become_cid_images_of_decodable_pngs() {
        let labels: Vec<String> = (41..49).map(|w| format!("2026-W{w}")).collect();
        let values: Vec<Option<f64>> = (0..8).map(|i| Some(f64::from(i))).collect();
        let a = charts::trend("Tareas <completadas>", &labels, &values, "#e07a1f").unwrap();
        let b = charts::bars("Riesgo", &[("HIGH".into(), 2.0, "#c62828".into())]).unwrap();
        let html = format!("<p>uno</p><div>{a}</div><p>dos</p><div>{b}</div><p>tres</p>");
        let (mail, parts) = email_html(&html, "r1");
        assert!(!mail.contains("<svg"), "{mail}");
        assert_eq!(parts.len(), 2);
        assert!(mail.contains("<p>uno</p><div><img src=\"cid:chart1.r1@kairos.invalid\" width=\"560\" height=\"220\""));
        assert!(mail.contains("alt=\"Tareas &lt;completadas&gt;\""), "{mail}");
        assert!(mail.contains("cid:chart2.r1@kairos.invalid") && mail.ends_with("<p>tres</p>"));
        for p in &parts {
            let img = tiny_skia::Pixmap::decode_png(&p.bytes).unwrap();
            assert_eq!((img.width(), img.height()), (1120, 440));
            // Not blank: the chart's colours are there.
            assert!(img.pixels().iter().any(|px| px.red() > 150 && px.blue() < 100));
        }
        // A chart that is not SVG stays as it was.
        let (same, none) = email_html("<svg>broken", "r1");
        assert_eq!((same.as_str(), none.len()), ("<svg>broken", 0));
    }
}
