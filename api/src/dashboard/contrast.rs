//! The style sheet's colour pairs measured against WCAG 2.1: 4.5:1 for
//! text (1.4.3, AA), 3:1 for what is not text but must be seen — the focus
//! ring, the sparkline (1.4.11). The colours are read from
//! `api/assets/dashboard.css` itself, so a changed colour is measured
//! again. The browser test also runs axe-core on every rendered page.

/// The CSS as (selector, declarations) rules, comments removed.
fn rules(css: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut text = String::new();
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        text.push_str(&rest[..start]);
        rest = rest[start..].find("*/").map_or("", |end| &rest[start + end + 2..]);
    }
    text.push_str(rest);
    let mut out = Vec::new();
    for block in text.split('}') {
        let Some((selectors, body)) = block.split_once('{') else {
            continue;
        };
        let decls: Vec<(String, String)> = body
            .split(';')
            .filter_map(|d| d.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        for sel in selectors.split(',') {
            out.push((sel.trim().to_owned(), decls.clone()));
        }
    }
    out
}

/// The colour (`#rgb` or `#rrggbb`) of `prop` in the rule for `selector`
/// (the last one wins, as in CSS); `background` and `outline` shorthands too.
fn colour(css: &str, selector: &str, prop: &str) -> [u8; 3] {
    let value = rules(css)
        .into_iter()
        .filter(|(s, _)| s == selector)
        .flat_map(|(_, d)| d)
        .filter(|(k, _)| k == prop || k == &format!("{prop}-color"))
        .map(|(_, v)| v)
        .next_back()
        .unwrap_or_else(|| panic!("no `{prop}` for `{selector}` in dashboard.css"));
    let hex = value
        .split_whitespace()
        .find_map(|w| w.strip_prefix('#'))
        .unwrap_or_else(|| panic!("`{selector} {{ {prop}: {value} }}` is not a hex colour"));
    let digits: Vec<u8> = hex
        .chars()
        .map(|c| c.to_digit(16).unwrap_or_else(|| panic!("bad hex `{hex}`")) as u8)
        .collect();
    match digits.as_slice() {
        [r, g, b] => [r * 17, g * 17, b * 17],
        [r1, r2, g1, g2, b1, b2] => [r1 * 16 + r2, g1 * 16 + g2, b1 * 16 + b2],
        _ => panic!("bad hex `{hex}`"),
    }
}

/// WCAG 2.1 relative luminance.
fn luminance([r, g, b]: [u8; 3]) -> f64 {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.040_45 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
}

/// WCAG 2.1 contrast ratio, 1 to 21.
fn ratio(a: [u8; 3], b: [u8; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

#[test]
fn the_formula_matches_known_ratios() {
    assert!((ratio([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 1e-9);
    assert!((ratio([255, 255, 255], [255, 255, 255]) - 1.0).abs() < 1e-9);
    // #767676 on white is the classic just-passing grey: 4.54:1.
    assert!((ratio([0x76, 0x76, 0x76], [255, 255, 255]) - 4.54).abs() < 0.01);
}

#[test]
fn every_colour_pair_of_the_style_sheet_has_enough_contrast() {
    let css = include_str!("../../assets/dashboard.css");
    let c = |sel: &str, prop: &str| colour(css, sel, prop);
    let page = c(":root", "background");
    let text = c(":root", "color");
    let header = c("header", "background");
    // (what, foreground, background, minimum)
    let pairs = [
        ("body text", text, page, 4.5),
        ("links", c("a", "color"), page, 4.5),
        ("header text", c("header", "color"), header, 4.5),
        ("header links", c("header a", "color"), header, 4.5),
        (
            "header button",
            c("header button", "color"),
            c("header button", "background"),
            4.5,
        ),
        ("muted text", c(".muted", "color"), page, 4.5),
        ("dead state", c(".state-dead", "color"), page, 4.5),
        ("succeeded state", c(".state-succeeded", "color"), page, 4.5),
        ("flash message", text, c(".flash", "background"), 4.5),
        ("error message", text, c(".error", "background"), 4.5),
        ("code blocks", text, c("pre", "background"), 4.5),
        ("buttons", c("button", "color"), c("button", "background"), 4.5),
        (
            "danger buttons",
            c("button", "color"),
            c("button.danger", "background"),
            4.5,
        ),
        ("skip link", text, c(".skip:focus", "background"), 4.5),
        ("sparkline", c(".spark", "color"), page, 3.0),
        ("focus ring on the page", c("a:focus", "outline"), page, 3.0),
        ("focus ring in the header", c("header a:focus", "outline"), header, 3.0),
    ];
    let failing: Vec<String> = pairs
        .iter()
        .filter(|(_, fg, bg, min)| ratio(*fg, *bg) < *min)
        .map(|(what, fg, bg, min)| format!("{what}: {:.2}:1 < {min}:1 ({fg:?} on {bg:?})", ratio(*fg, *bg)))
        .collect();
    assert!(failing.is_empty(), "{failing:#?}");
}
