use std::process::ExitCode;

use clap::Parser;
use vizion_bridge::auth::signer;
use vizion_bridge::cli::{Cli, Command};
use vizion_bridge::commands;
use vizion_bridge::settings::Settings;
use vizion_bridge::startup::Application;
use vizion_bridge::telemetry::init_logging;

/// mimalloc in place of glibc's allocator: every webhook allocates and frees many small
/// buffers across the HTTP workers and the brokers' threads, where glibc's malloc took
/// almost a quarter of the bridge's CPU in the load benchmark's profile
/// (docs/BENCHMARKS.md, "Where the CPU goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc keeps freed memory for a while before giving it back: 25 ms here instead of
/// its default, long enough that the next burst of requests reuses the same pages
/// (giving them back at once cost 10 to 45% more CPU per update in page faults), short
/// enough that a burst's memory does not linger. The number is the option's place in
/// `mi_option_t` of the mimalloc 3 that libmimalloc-sys builds (`mimalloc.h`);
/// `MIMALLOC_PURGE_DELAY` still overrides it.
///
/// Transparent huge pages are turned off for the process. Where the kernel grants them,
/// every 4 KiB touched in a 2 MiB range makes all of it resident: under the peer
/// benchmark's load the bridge's peak resident size fell from 79 to 55 MiB on the file
/// sink and from 68 to 42 MiB on RabbitMQ without them, for the same CPU per request
/// (docs/BENCHMARKS.md). mimalloc is built without asking for them (`no_thp` in
/// Cargo.toml: its first arena is reserved before `main`, too early for an option set
/// here); the prctl covers kernels that grant them unasked (`always`) and the C
/// libraries' own allocations. `MIMALLOC_ALLOW_THP=1` skips the prctl, leaving huge
/// pages to the kernel's setting; mimalloc reads the same variable, and at `0` turns
/// them off itself.
fn tune_allocator() {
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option, first thing in `main`, before any
        // other thread exists.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 25) };
    }
    #[cfg(target_os = "linux")]
    if !allows_huge_pages(std::env::var("MIMALLOC_ALLOW_THP").ok().as_deref()) {
        // From here on the kernel backs no fault with a huge page. A kernel without
        // the flag answers an error, and the process runs as before.
        // SAFETY: a prctl with plain integer arguments; it reads and writes no memory.
        unsafe {
            let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
            libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused)
        };
    }
}

/// Whether `MIMALLOC_ALLOW_THP` asks for huge pages, read as mimalloc reads its options:
/// empty, `1`, `true`, `yes`, `on` (any case) or another number but 0.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn allows_huge_pages(value: Option<&str>) -> bool {
    let Some(value) = value.map(str::to_ascii_uppercase) else {
        return false;
    };
    matches!(value.as_str(), "" | "TRUE" | "YES" | "ON")
        || value.parse::<i64>().is_ok_and(|number| number != 0)
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            with_settings(config.clone(), |settings| serve(settings, config))
        }
        Command::CheckConfig { config } => with_settings(config, check_config),
        Command::Sign {
            secret_env,
            key_id,
            path,
            ttl,
            file,
        } => sign(&secret_env, key_id.as_deref(), &path, ttl, &file),
        Command::References {
            config,
            json,
            command,
        } => with_settings(config, |settings| {
            commands::references::run(&settings, command, json)
        }),
        Command::Poll {
            config,
            once: _,
            references,
            reference,
            json,
        } => with_settings(config, |settings| {
            init_logging(&settings.log);
            commands::poll::run(settings, references, reference, json)
        }),
        Command::Replay(args) => commands::replay::run(
            args.config.as_deref(),
            commands::replay::ReplayOptions {
                from: args.from,
                since: args.since,
                until: args.until,
                update_ids: args.update_id,
                references: args.reference,
                no_dedup: args.no_dedup,
                json: args.json,
            },
        ),
        Command::Spool {
            config,
            dir,
            command,
        } => with_settings(config, |settings| {
            init_logging(&settings.log);
            commands::spool::run(settings, dir, command)
        }),
    }
}

/// Loads the settings and runs `command` with them; a configuration that cannot be
/// loaded ends the process with its error.
fn with_settings(
    config: Option<std::path::PathBuf>,
    command: impl FnOnce(Settings) -> ExitCode,
) -> ExitCode {
    match Settings::load(config.as_deref()) {
        Ok(settings) => command(settings),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(settings: Settings, config: Option<std::path::PathBuf>) -> ExitCode {
    init_logging(&settings.log);
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build_reloadable(settings, config).await?;
        app.run_until_stopped().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "vizion-bridge failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(settings: Settings) -> ExitCode {
    match settings.validate() {
        Ok(warnings) => {
            for warning in warnings {
                eprintln!("warning: {}", warning.0);
            }
            print!("{}", settings.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn sign(
    secret_env: &str,
    key_id: Option<&str>,
    path: &str,
    ttl: i64,
    file: &std::path::Path,
) -> ExitCode {
    let Ok(secret) = std::env::var(secret_env) else {
        eprintln!("error: environment variable `{secret_env}` is not set");
        return ExitCode::FAILURE;
    };
    let body = match std::fs::read(file) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let now = vizion_bridge::clock::unix_seconds() as i64;
    let headers = signer::sign(secret.as_bytes(), key_id, path, now, now + ttl, &body);
    println!("digest: {}", headers.digest);
    println!("x-vizion-signature: {}", headers.signature);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::allows_huge_pages;

    #[test]
    fn huge_pages_stay_off_unless_the_variable_turns_them_on() {
        assert!(!allows_huge_pages(None));
        for off in ["0", "false", "No", "OFF", "nonsense"] {
            assert!(!allows_huge_pages(Some(off)), "{off}");
        }
        for on in ["", "1", "true", "Yes", "on", "2"] {
            assert!(allows_huge_pages(Some(on)), "{on}");
        }
    }
}
