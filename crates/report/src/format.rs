//! How numbers and tables look, on the terminal and in the report alike:
//! a part builds a [`Table`] once and both renderings come from it.

use serde::{Deserialize, Serialize};

/// A number for a table: up to 6 significant decimals, scientific when tiny
/// or huge; NaN (no value, e.g. the mean of nothing) as "—".
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "—".to_string()
    } else if v == 0.0 {
        "0".to_string()
    } else if (1e-4..1e7).contains(&v.abs()) {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.6e}")
    }
}

/// A fraction as a percentage with two decimals: 0.9644 → "96.44%"; NaN as "—".
pub fn pct(x: f64) -> String {
    if x.is_nan() {
        return "—".to_string();
    }
    format!("{:.2}%", 100.0 * x)
}

/// `text` trimmed, and cut to at most `width` characters, the last an
/// ellipsis, when it is longer.
pub fn shorten(text: &str, width: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    kept + "…"
}

/// A check's outcome for a table cell.
pub fn yes_no(passed: bool) -> String {
    if passed { "yes" } else { "NO" }.to_string()
}

/// A captioned table of text cells.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(caption: &str, headers: &[&str], rows: Vec<Vec<String>>) -> Self {
        Table {
            caption: caption.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows,
        }
    }

    /// Columns padded to their widest cell, a rule under the header (no caption).
    pub fn to_text(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.zip(&widths).enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                s.push_str(cell);
                s.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = line(&mut self.headers.iter().map(String::as_str));
        let rules: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
        out += &line(&mut rules.iter().map(String::as_str));
        for row in &self.rows {
            out += &line(&mut row.iter().map(String::as_str));
        }
        out
    }

    /// The table as CSV: the header row, then every row.
    pub fn to_csv(&self) -> Vec<u8> {
        // A flexible writer into memory cannot fail: ragged rows are allowed.
        let mut csv = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        let _ = csv.write_record(&self.headers);
        for row in &self.rows {
            let _ = csv.write_record(row);
        }
        csv.into_inner().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_writes_csv() {
        let t = Table::new("t", &["a", "bb"], vec![vec!["xyz".into(), "1,5".into()]]);
        assert_eq!(t.to_text(), "a    bb\n───  ───\nxyz  1,5\n");
        assert_eq!(
            String::from_utf8(t.to_csv()).unwrap(),
            "a,bb\nxyz,\"1,5\"\n"
        );
    }

    #[test]
    fn shortened_text_fits_its_width() {
        assert_eq!(shorten("  abc  ", 3), "abc");
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("αβγδε", 2).chars().count(), 2);
        assert_eq!(shorten("abc", 0), "…");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(0.952574126822433), "0.952574");
        assert_eq!(number(-2.0), "-2");
        assert_eq!(number(1.5e-9), "1.500000e-9");
        assert_eq!(pct(0.9644), "96.44%");
        // No value is a dash, never "NaN%".
        assert_eq!(number(f64::NAN), "—");
        assert_eq!(pct(f64::NAN), "—");
    }
}
