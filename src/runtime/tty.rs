//! `run -t`: a pseudo-terminal made by the shim. The container's process gets the terminal's
//! slave side as stdin, stdout and stderr (so `isatty` holds, with every runtime); the shim
//! relays between its own stdio and the master side, forwards window size changes, and puts
//! the user's terminal in raw mode meanwhile.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum TtyError {
    #[error("allocating a pseudo-terminal: {0}")]
    Open(nix::Error),
}

pub struct Pty {
    pub master: std::fs::File,
    pub slave: OwnedFd,
}

/// A pseudo-terminal sized like our stdin's terminal, if it is one.
pub fn open() -> Result<Pty, TtyError> {
    let size = rustix::termios::tcgetwinsize(std::io::stdin())
        .ok()
        .map(|w| nix::pty::Winsize {
            ws_row: w.ws_row,
            ws_col: w.ws_col,
            ws_xpixel: w.ws_xpixel,
            ws_ypixel: w.ws_ypixel,
        });
    let p = nix::pty::openpty(size.as_ref(), None).map_err(TtyError::Open)?;
    Ok(Pty {
        master: std::fs::File::from(p.master),
        slave: p.slave,
    })
}

/// The user's terminal in raw mode (keys go to the container as typed) until dropped.
pub struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

/// Copies our terminal's size to the container's.
pub fn resize(master: &impl AsFd) {
    if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, size);
    }
}

/// What one pass of the relay saw.
pub enum Relay {
    Open,
    /// The container side closed (every process holding the terminal has exited).
    Closed,
}

/// Moves what the container wrote to our stdout.
pub fn pump_output(master: &mut std::fs::File) -> Relay {
    let mut buf = [0u8; 8192];
    match master.read(&mut buf) {
        Ok(0) => Relay::Closed,
        Ok(n) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            Relay::Open
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Relay::Open,
        // EIO: the slave side has no holder left.
        Err(_) => Relay::Closed,
    }
}

/// Moves what the user typed to the container; Closed at the end of our stdin.
pub fn pump_input(master: &mut std::fs::File) -> Relay {
    let mut buf = [0u8; 4096];
    match std::io::stdin().lock().read(&mut buf) {
        Ok(0) | Err(_) => Relay::Closed,
        Ok(n) => {
            let _ = master.write_all(&buf[..n]);
            Relay::Open
        }
    }
}
