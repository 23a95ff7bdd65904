//! Tabular data for the sheet's (iii): CSV loading with precise errors, the
//! bundled Palmer Penguins table, a stratified split and standardisation.

use std::collections::BTreeSet;
use std::path::Path;

use ndarray::{Array1, Array2, Axis};

use crate::rng::NumpyRandom;

/// The Palmer Penguins table (Horst, Hill & Gorman, CC0), as shipped by the
/// PyPI package `palmerpenguins` 0.1.6; see `crates/dense/data/README.md`.
const PENGUINS_CSV: &str = include_str!("../data/penguins.csv");

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Row {
        file: String,
        line: u64,
        message: String,
    },
    #[error("{file}:{line}: column {column} (`{name}`): {message}")]
    Cell {
        file: String,
        line: u64,
        column: usize,
        name: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Table { file: String, message: String },
}

/// Samples as rows (n × d), labels 0…K−1 from the sorted class names.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub feature_names: Vec<String>,
    pub class_names: Vec<String>,
    pub x: Array2<f64>,
    pub y: Vec<usize>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The features with samples as columns (d × n), as the network takes them.
    pub fn columns(&self) -> Array2<f64> {
        self.x.t().to_owned()
    }

    fn subset(&self, rows: &[usize]) -> Dataset {
        Dataset {
            feature_names: self.feature_names.clone(),
            class_names: self.class_names.clone(),
            x: self.x.select(Axis(0), rows),
            y: rows.iter().map(|&r| self.y[r]).collect(),
        }
    }
}

/// Reads a CSV file with a header; `target` names the label column and every
/// other column is a numeric feature, in file order.
pub fn load_csv(path: &Path, target: &str) -> Result<Dataset, DataError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        file: file.clone(),
        source,
    })?;
    parse_csv(&text, &file, target)
}

/// The bundled penguins: bill length, bill depth, flipper length, body mass
/// and sex (male = 1) against species; rows with a missing value dropped.
pub fn penguins() -> Dataset {
    let keep = [
        "species",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
    ];
    let mut reader = csv::Reader::from_reader(PENGUINS_CSV.as_bytes());
    let header = reader.headers().expect("bundled CSV has a header").clone();
    let idx: Vec<usize> = keep
        .iter()
        .map(|k| header.iter().position(|h| h == *k).expect("bundled column"))
        .collect();
    let mut text = keep.join(",") + "\n";
    for record in reader.records() {
        let record = record.expect("bundled CSV parses");
        let cells: Vec<&str> = idx.iter().map(|&i| &record[i]).collect();
        if cells.contains(&"NA") {
            continue;
        }
        let sex = match cells[5] {
            "male" => "1",
            "female" => "0",
            other => panic!("bundled CSV: unexpected sex `{other}`"),
        };
        text += &format!(
            "{},{},{},{},{},{sex}\n",
            cells[0], cells[1], cells[2], cells[3], cells[4]
        );
    }
    parse_csv(&text, "penguins", "species").expect("bundled penguins parse")
}

/// Parses CSV text; `file` names it in errors.
pub fn parse_csv(text: &str, file: &str, target: &str) -> Result<Dataset, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let table_err = |message: String| DataError::Table {
        file: file.to_string(),
        message,
    };
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| table_err(format!("cannot read the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let target_col = header.iter().position(|h| h == target).ok_or_else(|| {
        table_err(format!(
            "no column `{target}`; the columns are {}",
            header.join(", ")
        ))
    })?;
    if header.len() < 2 {
        return Err(table_err(
            "need a target column and at least one feature column".into(),
        ));
    }
    let feature_cols: Vec<usize> = (0..header.len()).filter(|&c| c != target_col).collect();
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            DataError::Row {
                file: file.to_string(),
                line,
                message: e.to_string(),
            }
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        if record.len() != header.len() {
            return Err(DataError::Row {
                file: file.to_string(),
                line,
                message: format!(
                    "{} fields, but the header has {}",
                    record.len(),
                    header.len()
                ),
            });
        }
        for &c in &feature_cols {
            let cell = record[c].trim();
            match cell.parse::<f64>().ok() {
                Some(v) if v.is_finite() => features.push(v),
                _ => {
                    return Err(DataError::Cell {
                        file: file.to_string(),
                        line,
                        column: c + 1,
                        name: header[c].clone(),
                        message: if cell.is_empty() {
                            "missing value".to_string()
                        } else {
                            format!("`{cell}` is not a number")
                        },
                    })
                }
            }
        }
        labels.push(record[target_col].trim().to_string());
    }
    let class_names: Vec<String> = labels
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if labels.is_empty() {
        return Err(table_err("no data rows".into()));
    }
    if class_names.len() < 2 {
        return Err(table_err(format!(
            "the target `{target}` has only one class ({})",
            class_names[0]
        )));
    }
    let y = labels
        .iter()
        .map(|l| {
            class_names
                .binary_search(l)
                .expect("every label is a class")
        })
        .collect();
    let x = Array2::from_shape_vec((labels.len(), feature_cols.len()), features)
        .expect("one value per feature and row");
    Ok(Dataset {
        feature_names: feature_cols.iter().map(|&c| header[c].clone()).collect(),
        class_names,
        x,
        y,
    })
}

/// Splits each class separately so both parts keep the class proportions;
/// `test_fraction` 0 keeps everything for training.
pub fn stratified_split(
    data: &Dataset,
    test_fraction: f64,
    seed: u32,
) -> (Dataset, Option<Dataset>) {
    if test_fraction <= 0.0 {
        return (data.clone(), None);
    }
    let (train, test) = stratified_indices(&data.y, data.class_names.len(), test_fraction, seed);
    (data.subset(&train), Some(data.subset(&test)))
}

/// Indices of a stratified, seeded split of `labels` (0 … classes−1): each
/// class is shuffled with numpy's generator and its first `fraction`
/// (rounded) goes to the second part. Both parts come back sorted.
pub fn stratified_indices(
    labels: &[usize],
    classes: usize,
    fraction: f64,
    seed: u32,
) -> (Vec<usize>, Vec<usize>) {
    let mut rng = NumpyRandom::new(seed);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for class in 0..classes {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&r| labels[r] == class).collect();
        rng.shuffle(&mut rows);
        let n = ((rows.len() as f64) * fraction).round() as usize;
        second.extend_from_slice(&rows[..n]);
        first.extend_from_slice(&rows[n..]);
    }
    first.sort_unstable();
    second.sort_unstable();
    (first, second)
}

/// Per-feature mean and standard deviation of the training split.
#[derive(Clone, Debug)]
pub struct Standardizer {
    pub mean: Array1<f64>,
    pub std: Array1<f64>,
}

impl Standardizer {
    pub fn fit(train: &Dataset) -> Self {
        let mean = train
            .x
            .mean_axis(Axis(0))
            .expect("training split is not empty");
        // A constant feature keeps scale 1 rather than dividing by zero.
        let std = train
            .x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 0.0 { s } else { 1.0 });
        Self { mean, std }
    }

    pub fn apply(&self, data: &Dataset) -> Dataset {
        let mut out = data.clone();
        out.x -= &self.mean;
        out.x /= &self.std;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, target: &str) -> Result<Dataset, DataError> {
        parse_csv(text, "t.csv", target)
    }

    #[test]
    fn penguins_have_333_complete_rows_and_three_species() {
        let p = penguins();
        assert_eq!(p.len(), 333);
        assert_eq!(p.class_names, ["Adelie", "Chinstrap", "Gentoo"]);
        assert_eq!(p.feature_names.len(), 5);
        assert_eq!(p.x.row(0).to_vec(), [39.1, 18.7, 181.0, 3750.0, 1.0]);
    }

    #[test]
    fn labels_are_sorted_class_names() {
        let d = parse("a,cls,b\n1,z,2\n3,a,4\n5,m,6\n", "cls").unwrap();
        assert_eq!(d.class_names, ["a", "m", "z"]);
        assert_eq!(d.y, [2, 0, 1]);
        assert_eq!(d.feature_names, ["a", "b"]);
        assert_eq!(d.x.row(1).to_vec(), [3.0, 4.0]);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = parse("a,cls\n1,x\nfoo,y\n", "cls").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv:3: column 1 (`a`): `foo` is not a number"
        );
        let e = parse("a,cls\n1,x\n,y\n", "cls").unwrap_err();
        assert_eq!(e.to_string(), "t.csv:3: column 1 (`a`): missing value");
        let e = parse("a,b,cls\n1,2,x\n1,y\n", "cls").unwrap_err();
        assert_eq!(e.to_string(), "t.csv:3: 2 fields, but the header has 3");
        let e = parse("a,cls\n1,x\n", "species").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv: no column `species`; the columns are a, cls"
        );
        let e = parse("a,cls\n1,x\n2,x\n", "cls").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv: the target `cls` has only one class (x)"
        );
    }

    #[test]
    fn stratified_split_keeps_class_proportions() {
        let p = penguins();
        let (train, test) = stratified_split(&p, 0.2, 42);
        let test = test.unwrap();
        assert_eq!(train.len() + test.len(), p.len());
        for class in 0..3 {
            let all = p.y.iter().filter(|&&y| y == class).count() as f64;
            let t = test.y.iter().filter(|&&y| y == class).count() as f64;
            assert!((t - 0.2 * all).abs() <= 0.5, "class {class}: {t} of {all}");
        }
    }

    #[test]
    fn standardizer_uses_training_statistics() {
        let p = penguins();
        let (train, test) = stratified_split(&p, 0.2, 1);
        let s = Standardizer::fit(&train);
        let t = s.apply(&train);
        for m in t.x.mean_axis(Axis(0)).unwrap() {
            assert!(m.abs() < 1e-12);
        }
        let test = s.apply(&test.unwrap());
        assert!(test
            .x
            .mean_axis(Axis(0))
            .unwrap()
            .iter()
            .any(|m| m.abs() > 1e-6));
    }
}
