//! Captures every log line of the test process, so a test can search a full run's
//! output for secrets (S1).

use std::io::Write;
use std::sync::{Mutex, OnceLock};

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<()> = OnceLock::new();

#[derive(Clone, Copy)]
pub struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        BUFFER
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a global subscriber at the most verbose level for Keyway (debug for the
/// libraries) writing into the capture buffer. Idempotent.
pub fn install() {
    INSTALLED.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::new(
            "trace,hyper=debug,hyper_util=debug,reqwest=debug,h2=debug,tower=debug,rustls=debug",
        );
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(|| Capture)
            .with_ansi(false)
            .try_init();
    });
}

pub fn captured() -> String {
    String::from_utf8_lossy(&BUFFER.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}
