//! Progress bars on stderr for long work; hidden when stderr is not a
//! terminal or when stdout carries JSON.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, quiet: bool, label: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{label} {{msg:>10}} [{{bar:30}}] {{pos}}/{{len}} {{elapsed}} (eta {{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// A bar over weighted work (`total` in expected seconds) showing elapsed
/// time and an estimate of the rest; hidden when quiet or not on a terminal.
pub fn weighted(total: f64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total.round().max(1.0) as u64);
    bar.set_style(
        ProgressStyle::with_template("[{bar:24}] {elapsed_precise} (eta {eta}) {wide_msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    bar
}

/// A finished-step line: above the bar on a terminal, plain on stderr
/// otherwise, nothing when quiet.
pub fn line(bar: &ProgressBar, quiet: bool, text: &str) {
    if quiet {
        return;
    }
    if bar.is_hidden() {
        eprintln!("{text}");
    } else {
        bar.println(text);
    }
}
