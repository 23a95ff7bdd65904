//! Inputs that once broke a reader or that probe its limits, kept in
//! `crates/fuzz/regressions/TARGET/`: each runs through its target without
//! a panic, and each malformed one is refused. A crash the fuzzer finds is
//! added here (`nabla-fuzz replay TARGET FILE` shows what a file does).

use std::path::PathBuf;

use nabla_fuzz::Target;

/// Well-formed inputs at a limit, which the reader may accept: a pickle that
/// stops with 10⁵ marks left open, and a 5,000-statement chain (which the
/// fuzz target refuses only because the picture stops at 2,000 nodes).
const MAY_BE_ACCEPTED: [&str; 2] = ["deep-marks.pkl", "long-chain.graph"];

#[test]
fn every_regression_input_is_refused_without_a_panic() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions");
    for target in Target::ALL {
        let dir = root.join(target.name());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(
            !files.is_empty(),
            "{} has no regression inputs",
            dir.display()
        );
        for file in files {
            let input = std::fs::read(&file).unwrap();
            let accepted = target.run(&input);
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if !MAY_BE_ACCEPTED.contains(&name.as_str()) {
                assert!(!accepted, "{} was accepted", file.display());
            }
        }
    }
}
