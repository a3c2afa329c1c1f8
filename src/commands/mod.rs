//! Commands of the command line beyond `serve`, `check-config` and `sign`.

pub mod poll;
pub mod references;
pub mod replay;
pub mod spool;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::runtime::{Builder, Runtime};

/// The runtime a command runs on: several threads where sinks or a poller work side
/// by side, one thread where the command does one thing at a time.
pub(crate) fn runtime(multi_thread: bool) -> Result<Runtime, String> {
    let mut builder = if multi_thread {
        Builder::new_multi_thread()
    } else {
        Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))
}

/// A progress bar on standard error, shown only on a terminal.
pub(crate) fn progress(unit: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&format!("{{spinner}} {{pos}}/{{len}} {unit}"))
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
