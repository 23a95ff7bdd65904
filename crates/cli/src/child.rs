//! Parts of a long job run as child processes of this same binary with
//! `--json` (and `--out DIR`): the exact command that reproduces each result
//! is known, a failing part cannot take the others down, and each part's
//! memory is its own. Used by `nabla all` and `nabla vision compare`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use nabla_report::{shorten, Provenance, Status};
use serde::de::DeserializeOwned;

/// What a child left behind. A child that fails says so in `status` alone,
/// whether or not it printed its JSON (a comparison with a failed run still
/// prints its table).
pub struct Outcome {
    /// The command line, as a user would type it, and its `--out`.
    pub provenance: Provenance,
    pub seconds: f64,
    /// The one JSON document it printed, if it printed one.
    pub json: Option<String>,
    /// Failed carries the exit status and the end of its stderr.
    pub status: Status,
}

impl Outcome {
    /// The child's JSON as the part's typed report, or why there is none.
    pub fn parse<T: DeserializeOwned>(&self) -> nabla_report::Outcome<T> {
        let command = &self.provenance.command;
        let Some(json) = &self.json else {
            return Err(match self.status.reason() {
                Some(reason) => format!("`{command}` failed: {reason}"),
                None => format!("`{command}` printed no JSON"),
            });
        };
        serde_json::from_str(json)
            .map(|report| (report, self.provenance.clone()))
            .map_err(|e| {
                format!("`{command}` printed JSON that does not match its report type: {e}")
            })
    }

    /// One line for a progress display.
    pub fn summary(&self) -> String {
        match self.status.reason() {
            None => format!("done in {:.1} s", self.seconds),
            Some(reason) => format!("FAILED: {}", shorten(reason, 200)),
        }
    }
}

/// Runs `nabla ARGS [--out OUT] --json`, passing each line the child prints
/// on stderr to `on_line`.
pub fn run_child(
    exe: &Path,
    args: &[String],
    out: Option<&Path>,
    on_line: &dyn Fn(&str),
) -> Outcome {
    let mut args = args.to_vec();
    if let Some(dir) = out {
        args.extend(["--out".into(), dir.display().to_string()]);
    }
    let command = format!(
        "nabla {}",
        args.iter().map(|a| quoted(a)).collect::<Vec<_>>().join(" ")
    );
    let t = Instant::now();
    let (json, status) = match spawn(exe, &args, on_line) {
        Ok((json, status)) => (json, status),
        Err(reason) => (None, Status::Failed { reason }),
    };
    Outcome {
        provenance: Provenance {
            command,
            dir: out.map(Path::to_path_buf).unwrap_or_default(),
        },
        seconds: t.elapsed().as_secs_f64(),
        json,
        status,
    }
}

/// The child's stdout when it is one JSON document, and how it ended.
fn spawn(
    exe: &Path,
    args: &[String],
    on_line: &dyn Fn(&str),
) -> Result<(Option<String>, Status), String> {
    let mut child = Command::new(exe)
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
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
    let exit = child
        .wait()
        .map_err(|e| format!("waiting for it failed: {e}"))?;
    let text = reader
        .join()
        .map_err(|_| "reading its output failed".to_string())?
        .map_err(|e| format!("reading its output failed: {e}"))?;
    let json = serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .is_ok()
        .then_some(text);
    let status = if exit.success() && json.is_some() {
        Status::Ran
    } else if exit.success() {
        Status::Failed {
            reason: "it did not print one JSON document".into(),
        }
    } else {
        Status::Failed {
            reason: format!("it exited with {exit}:\n{}", tail.join("\n")),
        }
    };
    Ok((json, status))
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
