//! `nabla sgd-rates` and `nabla dropout` end to end, on small settings.

mod common;
use common::*;

#[test]
fn sgd_rates_reports_every_problem_and_schedule_with_the_bound_held() {
    let dir = temp_dir("sgd");
    let doc = json(&nabla(&[
        "sgd-rates",
        "--steps",
        "2000",
        "--runs",
        "40",
        "--schedule",
        "0.5/(k+1)^0.6",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]));
    let records = doc["records"].as_array().unwrap();
    assert_eq!(records.len(), 2 * 6);
    for r in records {
        assert_eq!(r["bound_held"], true, "{}", r["schedule_label"]);
        assert!(r["fitted_slope"].is_number() && r["predicted_rate"].is_number());
    }
    let custom = records
        .iter()
        .find(|r| r["schedule_label"] == "0.5/(k+1)^0.6")
        .unwrap();
    assert!((custom["predicted_rate"].as_f64().unwrap() + 0.4).abs() < 1e-12);
    assert!(dir.join("sgd_cosine.svg").exists() && dir.join("sgd_huber-quadratic.svg").exists());
    let o = nabla(&["sgd-rates", "--schedule", "1/k^2"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn dropout_checks_pass_and_report_all_three_parts() {
    let doc = json(&nabla(&[
        "dropout",
        "--q",
        "0.05,0.3",
        "--draws",
        "40",
        "--samples",
        "40000",
        "--json",
    ]));
    assert_eq!(doc["eta"].as_array().unwrap().len(), 2);
    assert!(doc["eta"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["passed"] == true));
    assert!(
        doc["hessian_check"]["max_relative_difference"]
            .as_f64()
            .unwrap()
            < 1e-5
    );
    let gap = doc["gap"].as_array().unwrap();
    assert!(gap.iter().all(|g| g["monte_carlo"].as_f64().unwrap() > 0.0));
    assert!(doc["linear"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["within_4_se"] == true));
    assert!(doc["interpretation"].as_str().unwrap().contains("ridge"));
    let o = nabla(&["dropout", "--q", "1.5"]);
    assert_eq!(o.status.code(), Some(2));
}
