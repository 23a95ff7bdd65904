//! The per-batch schedules against PyTorch's (fixture:
//! tools/gen_schedule_fixtures.py).

use nabla_vision::schedule::{LrSchedule, ScheduleConfig};
use serde_json::Value;

#[test]
fn one_cycle_and_cosine_match_pytorch() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/lr_schedules.json")).unwrap();
    let steps = fixture["steps"].as_u64().unwrap() as usize;
    let lr = fixture["lr"].as_f64().unwrap();
    for (kind, key) in [
        (LrSchedule::OneCycle, "one_cycle"),
        (LrSchedule::Cosine, "cosine"),
    ] {
        let c = ScheduleConfig {
            kind,
            warmup_epochs: 0.0,
        };
        let theirs = fixture[key].as_array().unwrap();
        assert_eq!(theirs.len(), steps);
        for (s, t) in theirs.iter().enumerate() {
            let (ours, t) = (c.rate(lr, s, steps, 10), t.as_f64().unwrap());
            assert!(
                (ours - t).abs() <= 1e-12 * lr,
                "{key} step {s}: {ours} against PyTorch's {t}"
            );
        }
    }
}
