//! `nabla mlp` end to end.

mod common;
use common::*;

#[test]
fn forward_prints_the_sheets_output() {
    let doc = json(&nabla(&[
        "mlp",
        "forward",
        "--layers",
        "5",
        "--width",
        "10",
        "--input",
        "1,2,3,4,5",
        "--json",
    ]));
    assert_eq!(
        doc["layer_dims"],
        serde_json::json!([5, 10, 10, 10, 10, 10, 3])
    );
    let p: Vec<f64> = serde_json::from_value(doc["probabilities"].clone()).unwrap();
    // numpy's value from crates/dense/tests/fixtures/sheet_forward.json.
    assert!((p[2] - 0.583_054_698_215_631_3).abs() < 1e-12, "{p:?}");
}

#[test]
fn grad_norms_compare_curves_and_write_plot_and_csv() {
    let dir = temp_dir("norms");
    let o = nabla(&[
        "mlp",
        "grad-norms",
        "--activation",
        "elu,sigmoid",
        "--init",
        "he,xavier",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let doc = json(&o);
    let curves = doc["curves"].as_array().unwrap();
    assert_eq!(curves.len(), 4);
    assert!(curves
        .iter()
        .all(|c| c["norms"].as_array().unwrap().len() == 31));
    let explanation = doc["explanation"].as_array().unwrap();
    let sigmoid = explanation
        .iter()
        .find(|e| e.as_str().unwrap().starts_with("sigmoid/he"))
        .unwrap();
    assert!(sigmoid.as_str().unwrap().contains("vanishing"), "{sigmoid}");
    let svg = std::fs::read_to_string(dir.join("grad_norms.svg")).unwrap();
    assert!(svg.contains("sigmoid/xavier"));
    let csv = std::fs::read_to_string(dir.join("grad_norms.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 31);
}

#[test]
fn default_training_reaches_95_percent_test_accuracy_with_every_optimizer() {
    let dir = temp_dir("train");
    let doc = json(&nabla(&[
        "mlp",
        "train",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for run in runs {
        let history = run["history"].as_array().unwrap();
        assert_eq!(history[0]["iteration"], 0);
        let last = history.last().unwrap();
        let acc = last["test_accuracy"].as_f64().unwrap();
        assert!(acc >= 0.95, "{}: test accuracy {acc}", run["optimizer"]);
        assert!(last["train_loss"].as_f64().unwrap() < history[0]["train_loss"].as_f64().unwrap());
    }
    for file in [
        "history.csv",
        "loss.svg",
        "accuracy.svg",
        "weight_norm.svg",
        "train.json",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
}

#[test]
fn user_csv_without_test_split_and_its_errors() {
    let dir = temp_dir("csv");
    let good = dir.join("good.csv");
    let mut text = String::from("a,b,label\n");
    for i in 0..40 {
        let x = i as f64 / 10.0;
        text += &format!("{x},{},{}\n", -x, if i % 2 == 0 { "even" } else { "odd" });
    }
    std::fs::write(&good, text).unwrap();
    let doc = json(&nabla(&[
        "mlp",
        "train",
        "--data",
        good.to_str().unwrap(),
        "--target",
        "label",
        "--epochs",
        "2",
        "--test-fraction",
        "0",
        "--json",
    ]));
    assert_eq!(doc["classes"], serde_json::json!(["even", "odd"]));
    assert_eq!(doc["features"], serde_json::json!(["a", "b"]));
    let first = &doc["runs"][0]["history"][0];
    assert!(first["test_loss"].is_null() && first["test_accuracy"].is_null());

    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "a,b,label\n1,2,x\n3,oops,y\n").unwrap();
    let o = nabla(&[
        "mlp",
        "train",
        "--data",
        bad.to_str().unwrap(),
        "--target",
        "label",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.csv:3: column 2 (`b`): `oops` is not a number"),
        "{err}"
    );

    let o = nabla(&[
        "mlp",
        "train",
        "--data",
        good.to_str().unwrap(),
        "--target",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no column `nope`"));
    let o = nabla(&["mlp", "train", "--data", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--target COLUMN is needed"));
}

#[test]
fn divergence_stops_and_empty_or_partial_test_splits_are_said() {
    let o = nabla(&["mlp", "train", "--lr", "1e6", "--epochs", "3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("training with sgd diverged: the training loss became")
            && err.contains("at iteration 1 (it started at 2.3574)")
            && err.contains("lower --lr"),
        "{err}"
    );

    let dir = temp_dir("splits");
    let csv = dir.join("three.csv");
    let mut text = String::from("a,label\n");
    for i in 0..40 {
        let class = match i {
            0 | 1 => "rare",
            _ if i % 2 == 0 => "even",
            _ => "odd",
        };
        text += &format!("{},{class}\n", i as f64 / 10.0);
    }
    std::fs::write(&csv, text).unwrap();
    let run = |fraction: &str| {
        let o = nabla(&[
            "mlp",
            "train",
            "--data",
            csv.to_str().unwrap(),
            "--target",
            "label",
            "--epochs",
            "1",
            "--test-fraction",
            fraction,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };
    // 2 % of 19, 19 and 2 rows rounds to none: no test numbers, and a dash.
    let none = run("0.02");
    assert!(
        none.contains("warning: --test-fraction 0.02 leaves no test rows of 40"),
        "{none}"
    );
    assert!(!none.contains("NaN"), "{none}");
    assert!(none.contains('—'), "{none}");
    // 20 % takes 4 of each large class and none of the 2 rare rows.
    let partial = run("0.2");
    assert!(
        partial.contains("warning: class `rare` has no test rows at --test-fraction 0.2"),
        "{partial}"
    );
}
