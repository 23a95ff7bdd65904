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
    /// Set when the child failed but still printed its JSON (a comparison
    /// with a failed run, say): the message, with the end of its stderr.
    pub error: Option<String>,
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
    let command = format!(
        "nabla {}",
        args.iter().map(|a| quoted(a)).collect::<Vec<_>>().join(" ")
    );
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
    let failure = (!status.success())
        .then(|| format!("`{command}` exited with {status}:\n{}", tail.join("\n")));
    match serde_json::from_str::<Value>(&text) {
        Ok(json) => Ok(Outcome {
            json,
            dir: out.map(Path::to_path_buf).unwrap_or_default(),
            command,
            seconds: t.elapsed().as_secs_f64(),
            error: failure,
        }),
        Err(e) => Err(match failure {
            Some(failure) => anyhow!(failure),
            None => anyhow!(e).context(format!("`{command}` did not print one JSON document")),
        }),
    }
}

/// `arg` as a POSIX shell reads it back: bare when it is plain, else in
/// single quotes.
fn quoted(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,=:@+%~".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn arguments_are_quoted_only_when_a_shell_needs_it() {
        assert_eq!(quoted("runs/compare-1,2"), "runs/compare-1,2");
        assert_eq!(quoted("my photos"), "'my photos'");
        assert_eq!(quoted("it's"), "'it'\\''s'");
        assert_eq!(quoted(""), "''");
    }
}
