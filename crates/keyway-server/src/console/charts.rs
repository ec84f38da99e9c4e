//! Server-rendered SVG charts for the console: no script, no inline CSS (the page CSP
//! allows neither), only SVG presentation attributes. Labels are escaped here because the
//! markup is passed to the template as safe.

/// Colours by series, readable on white and for common colour-vision deficiencies.
pub const PALETTE: &[&str] = &[
    "#3a5bd9", "#d9822b", "#1f8a4c", "#b3261e", "#7b4fb8", "#5b6475",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A horizontal bar chart: one labelled bar per item, value printed at its end.
pub fn bars(title: &str, items: &[(String, u64, &str)]) -> String {
    let row = 26;
    let label_w = 170;
    let bar_w = 260;
    let height = (items.len().max(1) * row + 10) as u32;
    let max = items.iter().map(|i| i.1).max().unwrap_or(0).max(1);
    let mut out = format!(
        r#"<svg class="chart" role="img" viewBox="0 0 {w} {height}" width="100%" aria-labelledby="t-{id}"><title id="t-{id}">{t}</title>"#,
        w = label_w + bar_w + 60,
        id = esc(&title.to_ascii_lowercase().replace(' ', "-")),
        t = esc(title),
    );
    if items.is_empty() {
        out.push_str(r##"<text x="0" y="20" fill="#5b6475" font-size="13">Nothing yet</text>"##);
    }
    for (i, (label, value, colour)) in items.iter().enumerate() {
        let y = i * row + 4;
        let w = if *value == 0 {
            0
        } else {
            (*value as f64 / max as f64 * bar_w as f64).round().max(2.0) as u64
        };
        out.push_str(&format!(
            r##"<text x="0" y="{ty}" font-size="13" fill="#1d2330">{label}</text><rect x="{label_w}" y="{y}" width="{w}" height="18" rx="3" fill="{colour}"><title>{label}: {value}</title></rect><text x="{vx}" y="{ty}" font-size="13" fill="#1d2330">{value}</text>"##,
            ty = y + 14,
            label = esc(label),
            vx = label_w + w as usize + 6,
        ));
    }
    out.push_str("</svg>");
    out
}

/// Columns per hour for several series side by side, with a legend.
pub fn hourly(title: &str, hours: &[String], series: &[(String, Vec<u64>, &str)]) -> String {
    let chart_h = 140.0;
    let top = 24.0;
    let left = 40.0;
    let slot = 44.0;
    let width = left + slot * hours.len().max(1) as f64 + 10.0;
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut out = format!(
        r#"<svg class="chart" role="img" viewBox="0 0 {width} {h}" width="100%" aria-labelledby="t-{id}"><title id="t-{id}">{t}</title>"#,
        h = top + chart_h + 30.0,
        id = esc(&title.to_ascii_lowercase().replace(' ', "-")),
        t = esc(title),
    );
    // Legend.
    let mut lx = left;
    for (name, _, colour) in series {
        out.push_str(&format!(
            r##"<rect x="{lx}" y="4" width="10" height="10" fill="{colour}"/><text x="{tx}" y="13" font-size="12" fill="#1d2330">{n}</text>"##,
            tx = lx + 14.0,
            n = esc(name),
        ));
        lx += 30.0 + 7.5 * name.len() as f64;
    }
    out.push_str(&format!(
        r##"<text x="0" y="{y}" font-size="11" fill="#5b6475">{max}</text><line x1="{left}" y1="{base}" x2="{width}" y2="{base}" stroke="#e2e6ee"/>"##,
        y = top + 10.0,
        base = top + chart_h,
    ));
    let bar_w = (slot - 8.0) / series.len().max(1) as f64;
    for (h, label) in hours.iter().enumerate() {
        let x0 = left + slot * h as f64 + 2.0;
        for (k, (name, values, colour)) in series.iter().enumerate() {
            let v = values.get(h).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let bh = (v as f64 / max as f64 * chart_h).max(1.0);
            out.push_str(&format!(
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{bh:.1}" fill="{colour}"><title>{label} {n}: {v}</title></rect>"#,
                x = x0 + bar_w * k as f64,
                y = top + chart_h - bh,
                label = esc(label),
                n = esc(name),
            ));
        }
        if h % 3 == 0 {
            out.push_str(&format!(
                r##"<text x="{x0:.1}" y="{y}" font-size="10" fill="#5b6475">{l}</text>"##,
                y = top + chart_h + 14.0,
                l = esc(label),
            ));
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_bars_scale() {
        let svg = bars(
            "By status",
            &[
                ("<script>".into(), 10, PALETTE[0]),
                ("ok".into(), 5, PALETTE[1]),
            ],
        );
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script>"));
        assert!(svg.contains(r#"width="260""#) && svg.contains(r#"width="130""#));
        let empty = bars("Nothing", &[]);
        assert!(empty.contains("Nothing yet"));
        let h = hourly(
            "Calls",
            &["10:00".into(), "11:00".into()],
            &[("token calls".into(), vec![4, 0], PALETTE[0])],
        );
        assert!(h.contains("10:00 token calls: 4") && !h.contains("11:00 token calls"));
    }
}
