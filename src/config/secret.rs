//! Secrets (HSM PIN, SMTP password) read from an environment variable or a file, never from
//! the TOML. `Debug` and `Display` print a placeholder so a secret cannot reach a log line.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

/// A secret value. Cloning copies the secret; dropping wipes it.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }
    /// The secret itself, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret comes from, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The named environment variable.
    Env(String),
    /// The file's contents, without a trailing newline.
    File(std::path::PathBuf),
}

/// Why a secret could not be read. Names where it was looked for, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the environment variable {0} is not set (it should hold the {1})")]
    EnvMissing(String, &'static str),
    #[error("cannot read the {1} from {0}")]
    File(String, &'static str, #[source] std::io::Error),
    #[error("the {0} is empty")]
    Empty(&'static str),
}

impl SecretSource {
    /// Reads the secret; `what` names it in errors ("HSM PIN").
    pub fn read(&self, what: &'static str) -> Result<Secret, SecretError> {
        let value = match self {
            Self::Env(var) => {
                std::env::var(var).map_err(|_| SecretError::EnvMissing(var.clone(), what))?
            }
            Self::File(path) => read_file(path)
                .map_err(|e| SecretError::File(path.display().to_string(), what, e))?,
        };
        let trimmed = value.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            return Err(SecretError::Empty(what));
        }
        Ok(Secret::new(trimmed.to_owned()))
    }
}

fn read_file(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("123456".into());
        assert!(!format!("{s:?}").contains("123456"));
    }

    #[test]
    fn file_secret_drops_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        std::fs::write(&p, "9876\n").unwrap();
        let s = SecretSource::File(p).read("HSM PIN").unwrap();
        assert_eq!(s.expose(), "9876");
    }

    #[test]
    fn missing_env_names_the_variable_not_a_value() {
        let err = SecretSource::Env("CERTGATE_TEST_SURELY_UNSET".into())
            .read("HSM PIN")
            .unwrap_err();
        assert!(err.to_string().contains("CERTGATE_TEST_SURELY_UNSET"));
    }
}
