//! The one error the binary reports: which step failed, on which config
//! field, and why — printed as a single line. Callers match on it (the
//! integration tests read it), so it is a typed error.

/// A failed provisioning step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {step} failed (field {field}): {reason}")]
pub struct StepError {
    /// `platform`, `fetch`, `validate`, `preflight`, `hostname`, `users`,
    /// `files`, `etcd`, `kubelet`, `units` or `stamp`.
    pub step: String,
    /// The config field (or kernel argument) it concerns.
    pub field: String,
    /// Why, on one line, without secrets.
    pub reason: String,
}

impl StepError {
    /// A step error from any error chain.
    pub fn new(step: &str, field: impl Into<String>, err: &anyhow::Error) -> Self {
        let reason = format!("{err:#}");
        StepError {
            step: step.to_string(),
            field: field.into(),
            reason: reason
                .split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}

/// Attach a step and field to an error.
pub trait InStep<T> {
    /// Fail step `step` on `field`.
    fn in_step(self, step: &str, field: impl Into<String>) -> Result<T, StepError>;
}

impl<T> InStep<T> for anyhow::Result<T> {
    fn in_step(self, step: &str, field: impl Into<String>) -> Result<T, StepError> {
        self.map_err(|e| StepError::new(step, field, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line() {
        let e: anyhow::Result<()> = Err(anyhow::anyhow!("a\nb").context("outer"));
        let s = e.in_step("files", "files[0].url").unwrap_err().to_string();
        assert_eq!(s, "step files failed (field files[0].url): outer: a; b");
    }
}
