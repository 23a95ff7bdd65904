//! A report as data — sections of text, tables, figures and commands — and
//! its two renderings: one self-contained HTML page (inline SVG, inline CSS,
//! no scripts, no network) and Markdown for reading on GitHub (figures as
//! SVG files beside it).

use std::fmt::Write as _;

/// One piece of a section.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// A paragraph of plain text (no markup).
    Text(String),
    /// A highlighted paragraph: a measured finding or a warning.
    Note(String),
    /// A part that failed: what went wrong (the browser check fails on it).
    Failure(String),
    /// A table with a caption.
    Table {
        caption: String,
        headers: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// An SVG picture, also written to `file` for the Markdown rendering.
    Figure {
        caption: String,
        file: String,
        svg: String,
    },
    /// A shell command that reproduces what the section shows.
    Command(String),
}

/// A titled section with its blocks and subsections.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Section {
    /// Anchor for links (`#id`).
    pub id: String,
    pub title: String,
    pub blocks: Vec<Block>,
    pub subsections: Vec<Section>,
}

impl Section {
    pub fn new(id: &str, title: &str) -> Self {
        Section {
            id: id.into(),
            title: title.into(),
            ..Section::default()
        }
    }

    pub fn text(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Text(text.into()));
        self
    }

    pub fn note(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Note(text.into()));
        self
    }

    pub fn failure(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Failure(text.into()));
        self
    }

    pub fn command(&mut self, command: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Command(command.into()));
        self
    }

    pub fn table(&mut self, caption: &str, headers: &[&str], rows: Vec<Vec<String>>) -> &mut Self {
        self.blocks.push(Block::Table {
            caption: caption.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows,
        });
        self
    }

    pub fn figure(&mut self, caption: &str, file: &str, svg: String) -> &mut Self {
        self.blocks.push(Block::Figure {
            caption: caption.into(),
            file: file.into(),
            svg,
        });
        self
    }
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    pub title: String,
    pub subtitle: String,
    /// Facts about the run (version, seeds, times, machine), shown first.
    pub facts: Vec<(String, String)>,
    pub sections: Vec<Section>,
}

impl Document {
    /// Every figure, depth first, for writing the Markdown's SVG files.
    pub fn figures(&self) -> Vec<(&str, &str)> {
        fn walk<'a>(s: &'a Section, out: &mut Vec<(&'a str, &'a str)>) {
            for b in &s.blocks {
                if let Block::Figure { file, svg, .. } = b {
                    out.push((file, svg));
                }
            }
            for sub in &s.subsections {
                walk(sub, out);
            }
        }
        let mut out = Vec::new();
        for s in &self.sections {
            walk(s, &mut out);
        }
        out
    }

    /// One self-contained HTML page.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n<p class=\"subtitle\">{}</p>\n",
            escape(&self.title),
            escape(&self.title),
            escape(&self.subtitle)
        );
        h.push_str("<dl class=\"facts\">\n");
        for (k, v) in &self.facts {
            let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", escape(k), escape(v));
        }
        h.push_str("</dl>\n<nav><ol>\n");
        for s in &self.sections {
            let _ = writeln!(
                h,
                "<li><a href=\"#{}\">{}</a></li>",
                escape(&s.id),
                escape(&s.title)
            );
        }
        h.push_str("</ol></nav>\n</header>\n<main>\n");
        let mut figure = 0;
        for s in &self.sections {
            section_html(&mut h, s, 2, &mut figure);
        }
        h.push_str("</main>\n</body>\n</html>\n");
        h
    }

    /// Markdown with figures linked as `figure_dir/FILE`.
    pub fn to_markdown(&self, figure_dir: &str) -> String {
        let mut m = format!("# {}\n\n{}\n\n", self.title, self.subtitle);
        for (k, v) in &self.facts {
            let _ = writeln!(m, "- **{k}**: {v}");
        }
        m.push('\n');
        for s in &self.sections {
            let _ = writeln!(m, "- [{}](#{})", s.title, s.id);
        }
        m.push('\n');
        for s in &self.sections {
            section_markdown(&mut m, s, 2, figure_dir);
        }
        m
    }
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:980px;margin:0 auto;padding:1.5rem;color:#1d1d1f;line-height:1.5}\
h1{margin-bottom:.2rem}.subtitle{color:#555;margin-top:0}\
h2{border-bottom:2px solid #0072B2;padding-bottom:.2rem;margin-top:2.5rem}h3{margin-top:1.8rem}\
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;font-size:.9rem;background:#f5f7fa;padding:.8rem 1rem;border-radius:6px}\
dl.facts dt{font-weight:600}dl.facts dd{margin:0}\
nav ol{columns:2;font-size:.95rem}\
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem;font-variant-numeric:tabular-nums}\
th,td{border-bottom:1px solid #ddd;padding:.25rem .7rem;text-align:left}th{background:#f5f7fa}td.n{text-align:right;white-space:nowrap}\
pre.failure{background:#fdecea;color:#8a1c12;white-space:pre-wrap}caption{caption-side:top;text-align:left;font-weight:600;padding-bottom:.3rem}\
figure{margin:1rem 0}figure svg{max-width:100%;height:auto;display:block}figcaption{font-size:.9rem;color:#555}\
.note{background:#fff7e0;border-left:4px solid #E69F00;padding:.5rem .8rem}\
pre{background:#1d1d1f;color:#f5f5f7;padding:.6rem .8rem;border-radius:6px;white-space:pre-wrap;word-break:break-all}";

fn section_html(h: &mut String, s: &Section, level: usize, figure: &mut usize) {
    let _ = writeln!(
        h,
        "<section id=\"{}\">\n<h{level}>{}</h{level}>",
        escape(&s.id),
        escape(&s.title)
    );
    for b in &s.blocks {
        match b {
            Block::Text(t) => {
                let _ = writeln!(h, "<p>{}</p>", escape(t));
            }
            Block::Note(t) => {
                let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(t));
            }
            Block::Failure(t) => {
                let _ = writeln!(h, "<pre class=\"failure\">{}</pre>", escape(t));
            }
            Block::Command(c) => {
                let _ = writeln!(h, "<pre><code>$ {}</code></pre>", escape(c));
            }
            Block::Table {
                caption,
                headers,
                rows,
            } => {
                let _ = write!(h, "<table>\n<caption>{}</caption>\n<tr>", escape(caption));
                for c in headers {
                    let _ = write!(h, "<th>{}</th>", escape(c));
                }
                h.push_str("</tr>\n");
                for row in rows {
                    h.push_str("<tr>");
                    for c in row {
                        if looks_numeric(c) {
                            let _ = write!(h, "<td class=\"n\">{}</td>", escape(c));
                        } else {
                            let _ = write!(h, "<td>{}</td>", escape(c));
                        }
                    }
                    h.push_str("</tr>\n");
                }
                h.push_str("</table>\n");
            }
            Block::Figure { caption, svg, .. } => {
                *figure += 1;
                let _ = writeln!(
                    h,
                    "<figure>\n{}\n<figcaption>Figure {}. {}</figcaption>\n</figure>",
                    inline_svg(svg, &format!("f{figure}-")),
                    figure,
                    escape(caption)
                );
            }
        }
    }
    for sub in &s.subsections {
        section_html(h, sub, (level + 1).min(6), figure);
    }
    h.push_str("</section>\n");
}

fn section_markdown(m: &mut String, s: &Section, level: usize, figure_dir: &str) {
    let _ = writeln!(m, "{} {}\n", "#".repeat(level), s.title);
    for b in &s.blocks {
        match b {
            Block::Text(t) => {
                let _ = writeln!(m, "{t}\n");
            }
            Block::Note(t) => {
                let _ = writeln!(m, "> {t}\n");
            }
            Block::Failure(t) => {
                let _ = writeln!(m, "**Failed:**\n\n```text\n{t}\n```\n");
            }
            Block::Command(c) => {
                let _ = writeln!(m, "```sh\n{c}\n```\n");
            }
            Block::Table {
                caption,
                headers,
                rows,
            } => {
                let cell = |c: &str| c.replace('|', "\\|");
                let _ = writeln!(m, "**{caption}**\n");
                let _ = writeln!(
                    m,
                    "| {} |",
                    headers
                        .iter()
                        .map(|c| cell(c))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
                let _ = writeln!(
                    m,
                    "|{}",
                    headers
                        .iter()
                        .enumerate()
                        .map(|(i, _)| if i == 0 { " --- |" } else { " ---: |" })
                        .collect::<String>()
                );
                for row in rows {
                    let _ = writeln!(
                        m,
                        "| {} |",
                        row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
                    );
                }
                m.push('\n');
            }
            Block::Figure { caption, file, .. } => {
                let _ = writeln!(m, "![{caption}]({figure_dir}/{file})\n\n*{caption}*\n");
            }
        }
    }
    for sub in &s.subsections {
        section_markdown(m, sub, (level + 1).min(6), figure_dir);
    }
}

/// Numbers (with a unit, sign, ± or percent) are right-aligned in tables.
fn looks_numeric(cell: &str) -> bool {
    let first = cell.trim_start_matches(['+', '−', '-']).chars().next();
    first.is_some_and(|c| c.is_ascii_digit())
        && cell
            .chars()
            .all(|c| c.is_ascii_digit() || " .,+-−e%±sE×".contains(c))
}

/// HTML-escapes text for element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// An SVG document ready to sit inside HTML: without its XML prolog, and
/// with its ids (and the references to them) prefixed, so that two pictures
/// with the same marker names cannot take each other's.
fn inline_svg(svg: &str, prefix: &str) -> String {
    let body = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    };
    body.replace("id=\"", &format!("id=\"{prefix}"))
        .replace("url(#", &format!("url(#{prefix}"))
        .replace("href=\"#", &format!("href=\"#{prefix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Document {
        let mut s = Section::new("p1", "Problem 1 <graph>");
        s.text("a & b")
            .command("nabla graph --example sheet")
            .table(
                "values",
                &["node", "value"],
                vec![vec!["f".into(), "0.5".into()]],
            );
        let svg = "<?xml version=\"1.0\"?><svg><defs><marker id=\"a\"/></defs><path marker-end=\"url(#a)\"/></svg>";
        s.figure("the graph", "graph.svg", svg.into());
        let mut sub = Section::new("p1-i", "(i) expressions");
        sub.note("x | y");
        s.subsections.push(sub);
        Document {
            title: "nabla".into(),
            subtitle: "sheet 2".into(),
            facts: vec![("version".into(), "0.1.0".into())],
            sections: vec![s.clone(), {
                let mut t = s;
                t.id = "p2".into();
                t
            }],
        }
    }

    #[test]
    fn html_escapes_text_and_scopes_svg_ids() {
        let html = sample().to_html();
        assert!(html.contains("<h2>Problem 1 &lt;graph&gt;</h2>"));
        assert!(html.contains("<p>a &amp; b</p>"));
        assert!(html.contains("<h3>(i) expressions</h3>"));
        assert!(html.contains("id=\"f1-a\"") && html.contains("url(#f1-a)"));
        assert!(html.contains("id=\"f2-a\"") && html.contains("url(#f2-a)"));
        assert!(!html.contains("<?xml"));
        assert!(html.contains("Figure 2. the graph"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn markdown_links_figures_and_escapes_table_pipes() {
        let doc = sample();
        let md = doc.to_markdown("figures");
        assert!(md.contains("## Problem 1 <graph>"));
        assert!(md.contains("![the graph](figures/graph.svg)"));
        assert!(md.contains("| node | value |\n| --- | ---: |\n| f | 0.5 |"));
        assert!(md.contains("> x | y"));
        assert_eq!(doc.figures().len(), 2);
    }
}
