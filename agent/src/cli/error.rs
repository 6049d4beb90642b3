use crate::datapath::DatapathError;

/// Errors of the commands, by exit code: 1 for bad input (the message
/// names the object and the field), 2 when the environment is not ready.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Environment(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Input(_) => 1,
            CliError::Environment(_) => 2,
        }
    }
}

impl From<DatapathError> for CliError {
    fn from(e: DatapathError) -> Self {
        if e.is_environment() {
            CliError::Environment(e.to_string())
        } else {
            CliError::Input(e.to_string())
        }
    }
}
