//! Per-class precision, recall and F1 against scikit-learn's
//! classification_report (fixture: tools/gen_classification_fixtures.py).

use nabla_vision::metrics::{ClassScores, ClassificationReport};
use serde_json::Value;

fn close(ours: &ClassScores, theirs: &Value, what: &str) {
    for (field, value) in [
        ("precision", ours.precision),
        ("recall", ours.recall),
        ("f1-score", ours.f1),
        ("support", ours.support as f64),
    ] {
        let expected = theirs[field].as_f64().unwrap();
        assert!(
            (value - expected).abs() <= 1e-12,
            "{what} {field}: {value} against scikit-learn's {expected}"
        );
    }
}

#[test]
fn scores_match_scikit_learn() {
    let text = include_str!("fixtures/classification_report.json");
    let cases: Vec<Value> = serde_json::from_str(text).unwrap();
    assert_eq!(cases.len(), 4);
    for case in &cases {
        let k = case["classes"].as_u64().unwrap() as usize;
        let mut confusion = vec![vec![0; k]; k];
        let labels = |key: &str| -> Vec<usize> {
            case[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect()
        };
        for (t, p) in labels("y_true").into_iter().zip(labels("y_pred")) {
            confusion[t][p] += 1;
        }
        let names: Vec<String> = (0..k).map(|c| c.to_string()).collect();
        let r = ClassificationReport::new(&confusion, &names);
        let theirs = &case["report"];
        for c in &r.classes {
            close(c, &theirs[&c.name], &format!("k = {k}, class {}", c.name));
        }
        close(&r.macro_avg, &theirs["macro avg"], "macro avg");
        close(&r.weighted_avg, &theirs["weighted avg"], "weighted avg");
        assert!((r.accuracy - theirs["accuracy"].as_f64().unwrap()).abs() <= 1e-12);
    }
}
