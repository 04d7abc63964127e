//! Errors in what the user gave the harness: a scenario, a manifest, a flag.
//!
//! Each one names the file, the field and the fix, so that a user never has to read the code to
//! mend their input. They map to exit code 2, and they are all raised before anything starts.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the user's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The file (or `--flag`) the problem is in.
    pub file: PathBuf,
    /// Where in it, as a path of fields: `stages[1].weights`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl InputError {
    pub fn new(
        file: impl AsRef<Path>,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            file: file.as_ref().to_path_buf(),
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}\n  fix: {}", self.problem, self.fix)
    }
}

impl std::error::Error for InputError {}

/// Several problems found in one pass, reported together so the user can mend them at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputErrors(pub Vec<InputError>);

impl fmt::Display for InputErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputErrors {}

impl From<InputError> for InputErrors {
    fn from(e: InputError) -> Self {
        Self(vec![e])
    }
}

/// The unknown field serde refused, if that is the error: its name and its full path.
///
/// serde_path_to_error ends the path at the refused field or at the struct refusing it,
/// depending on where in the mapping the field stands; this gives the full path either way.
pub fn unknown_field(path: &str, message: &str) -> Option<(String, String)> {
    let name = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())?;
    let full = if path == "." || path.is_empty() {
        name.to_string()
    } else if path.ends_with(&format!(".{name}")) {
        path.to_string()
    } else {
        format!("{path}.{name}")
    };
    Some((name.to_string(), full))
}

/// Whether an error chain comes from bad input (exit 2 either way, but the message differs).
pub fn is_input_error(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| e.is::<InputError>() || e.is::<InputErrors>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(".", "unknown field `x`, expected `y`", Some(("x", "x")))]
    #[case("spec.a", "unknown field `x`, expected `y`", Some(("x", "spec.a.x")))]
    #[case("spec.a.x", "unknown field `x`, expected `y`", Some(("x", "spec.a.x")))]
    #[case("spec.a", "invalid type: string", None)]
    fn unknown_fields_get_their_full_path(
        #[case] path: &str,
        #[case] message: &str,
        #[case] want: Option<(&str, &str)>,
    ) {
        let got = unknown_field(path, message);
        assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    }

    #[test]
    fn display_names_file_field_and_fix() {
        let e = InputError::new("s.yaml", "stages[0]", "bad", "mend it");
        assert_eq!(
            e.to_string(),
            "s.yaml: field `stages[0]`: bad\n  fix: mend it"
        );
    }
}
