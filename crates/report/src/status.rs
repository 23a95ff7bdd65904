//! Whether a piece of work ran: one vocabulary for the steps of `nabla all`
//! and the runs of `nabla vision compare`.

use serde::{Deserialize, Serialize};

/// Serialised inside its owner as `"status": "ran" | "skipped" | "failed"`
/// with a `"reason"` beside the last two (`#[serde(flatten)]` it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    #[default]
    Ran,
    /// Not attempted, for a reason the user can act on (missing weights, say).
    Skipped { reason: String },
    /// Attempted, and it did not complete.
    Failed { reason: String },
}

impl Status {
    pub fn ran(&self) -> bool {
        matches!(self, Status::Ran)
    }

    pub fn failed(&self) -> bool {
        matches!(self, Status::Failed { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Status::Ran => "ran",
            Status::Skipped { .. } => "skipped",
            Status::Failed { .. } => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Status::Ran => None,
            Status::Skipped { reason } | Status::Failed { reason } => Some(reason),
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason() {
            Some(reason) => write!(f, "{}: {reason}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Row {
        name: String,
        #[serde(flatten)]
        status: Status,
    }

    #[test]
    fn a_status_reads_as_two_plain_fields() {
        let row = Row {
            name: "a".into(),
            status: Status::Skipped {
                reason: "no weights".into(),
            },
        };
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(
            json,
            r#"{"name":"a","status":"skipped","reason":"no weights"}"#
        );
        assert_eq!(serde_json::from_str::<Row>(&json).unwrap(), row);
        let ran: Row = serde_json::from_str(r#"{"name":"b","status":"ran"}"#).unwrap();
        assert!(ran.status.ran());
    }
}
