//! A backend that records what it is asked and answers as told, for tests of the shim's
//! logic without root or a container.

use super::{Backend, BackendError, ExecProcess, Paths, StartErrorKind};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Start { id: String, terminal: bool },
    Delete { id: String },
}

#[derive(Debug, Default)]
pub struct Fake {
    pub calls: Vec<Call>,
    /// What `start` fails with; it succeeds (pid 4242) when `None`.
    pub start_error: Option<StartErrorKind>,
    /// What `exec` returns.
    pub exec_code: i32,
}

impl Backend for Fake {
    fn start(
        &mut self,
        id: &str,
        _paths: &Paths,
        terminal: Option<&OwnedFd>,
    ) -> Result<Pid, BackendError> {
        self.calls.push(Call::Start {
            id: id.into(),
            terminal: terminal.is_some(),
        });
        match self.start_error {
            Some(kind) => Err(BackendError::Fake(kind)),
            None => Ok(Pid::from_raw(4242)),
        }
    }

    fn delete(&mut self, id: &str, _paths: &Paths) {
        self.calls.push(Call::Delete { id: id.into() });
    }

    fn exec(&self, _id: &str, _paths: &Paths, _request: &ExecProcess) -> Result<i32, BackendError> {
        Ok(self.exec_code)
    }
}
