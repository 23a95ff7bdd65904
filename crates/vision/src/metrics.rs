//! Per-class precision, recall, F1 and support from a confusion matrix,
//! with macro and support-weighted averages, as scikit-learn's
//! `classification_report` computes them (a ratio with a zero denominator
//! is 0, its `zero_division` default).

use nabla_report::Table;
use serde::{Deserialize, Serialize};

/// One class's scores (or an average's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub name: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Images whose true class this is (for an average: all of them).
    pub support: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    pub classes: Vec<ClassScores>,
    pub accuracy: f64,
    pub macro_avg: ClassScores,
    pub weighted_avg: ClassScores,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl ClassificationReport {
    /// From `confusion` (rows true class, columns predicted) and the class names.
    pub fn new(confusion: &[Vec<usize>], names: &[String]) -> Self {
        let k = confusion.len();
        let total: usize = confusion.iter().flatten().sum();
        let classes: Vec<ClassScores> = (0..k)
            .map(|c| {
                let tp = confusion[c][c];
                let support: usize = confusion[c].iter().sum();
                let predicted: usize = confusion.iter().map(|row| row[c]).sum();
                let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                ClassScores {
                    name: names.get(c).cloned().unwrap_or_else(|| c.to_string()),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let average = |name: &str, weight: &dyn Fn(&ClassScores) -> f64| {
            let sum: f64 = classes.iter().map(weight).sum();
            let mean = |f: fn(&ClassScores) -> f64| {
                if sum == 0.0 {
                    0.0
                } else {
                    classes.iter().map(|c| weight(c) * f(c)).sum::<f64>() / sum
                }
            };
            ClassScores {
                name: name.into(),
                precision: mean(|c| c.precision),
                recall: mean(|c| c.recall),
                f1: mean(|c| c.f1),
                support: total,
            }
        };
        let macro_avg = average("macro avg", &|_| 1.0);
        let weighted_avg = average("weighted avg", &|c| c.support as f64);
        ClassificationReport {
            accuracy: ratio((0..k).map(|c| confusion[c][c]).sum(), total),
            classes,
            macro_avg,
            weighted_avg,
        }
    }

    /// The report as scikit-learn prints it: one row per class, then the averages.
    pub fn table(&self) -> Table {
        let row = |c: &ClassScores| {
            vec![
                c.name.clone(),
                format!("{:.4}", c.precision),
                format!("{:.4}", c.recall),
                format!("{:.4}", c.f1),
                c.support.to_string(),
            ]
        };
        let mut rows: Vec<Vec<String>> = self.classes.iter().map(row).collect();
        rows.push(vec![
            "accuracy".into(),
            String::new(),
            String::new(),
            format!("{:.4}", self.accuracy),
            self.macro_avg.support.to_string(),
        ]);
        rows.push(row(&self.macro_avg));
        rows.push(row(&self.weighted_avg));
        Table::new(
            "Per-class precision, recall and F1",
            &["class", "precision", "recall", "F1", "support"],
            rows,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_never_predicted_scores_zero_not_nan() {
        let names = ["a".to_string(), "b".to_string()];
        let r = ClassificationReport::new(&[vec![3, 0], vec![2, 0]], &names);
        assert_eq!(r.classes[1].precision, 0.0);
        assert_eq!(r.classes[1].f1, 0.0);
        assert_eq!(r.classes[0].precision, 0.6);
        assert_eq!(r.accuracy, 0.6);
        assert_eq!(r.weighted_avg.support, 5);
    }
}
