//! Parts of a long job run as child processes of this same binary with
//! `--json` (and `--out DIR`): the exact command that reproduces each result
//! is known, a failing part cannot take the others down, and each part's
//! memory is its own. Used by `nabla all` and `nabla vision compare`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

/// What a child left behind.
pub struct Outcome {
    /// The one JSON document it printed.
    pub json: Value,
    /// Where it wrote its files (its `--out`).
    pub dir: PathBuf,
    /// The command line, as a user would type it.
    pub command: String,
    pub seconds: f64,
}

/// Runs `nabla ARGS [--out OUT] --json`, passing each line the child prints
/// on stderr to `on_line`.
pub fn run_child(
    exe: &Path,
    args: &[String],
    out: Option<&Path>,
    on_line: &dyn Fn(&str),
) -> Result<Outcome> {
    let mut args = args.to_vec();
    if let Some(dir) = out {
        args.extend(["--out".into(), dir.display().to_string()]);
    }
    let command = format!("nabla {}", args.join(" "));
    let t = Instant::now();
    let mut child = Command::new(exe)
        .args(&args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command}"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let mut stdout = child.stdout.take().expect("piped stdout");
    // Read stdout on a thread so a child with a lot to say on both streams
    // never blocks on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let mut tail: Vec<String> = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap_or_default();
        on_line(&line);
        tail.push(line);
        if tail.len() > 20 {
            tail.remove(0);
        }
    }
    let status = child.wait().context("waiting for a part")?;
    let text = reader
        .join()
        .map_err(|_| anyhow!("reading {command}'s output failed"))??;
    if !status.success() {
        return Err(anyhow!(
            "`{command}` exited with {status}:\n{}",
            tail.join("\n")
        ));
    }
    let json: Value = serde_json::from_str(&text)
        .with_context(|| format!("`{command}` did not print one JSON document"))?;
    Ok(Outcome {
        json,
        dir: out.map(Path::to_path_buf).unwrap_or_default(),
        command,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// `text` cut to `width` characters, with an ellipsis when cut.
pub fn shorten(text: &str, width: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= width {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(width).collect::<String>())
    }
}
