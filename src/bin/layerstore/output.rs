//! Output formatting in one place: JSON for scripts, human-readable sizes
//! and times for people, progress bars on a terminal's stderr only.

use std::io::{self, IsTerminal};

/// `println!` that returns the write error from the enclosing function
/// instead of panicking, so that a closed stdout (`layerstore ls | head`)
/// ends the command quietly (see `main`).
macro_rules! outln {
    () => {
        outln!("")
    };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
pub(crate) use outln;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn progress_bar(total: Option<u64>, what: &str) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .ok()?
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}").ok()?,
        ),
    };
    bar.set_message(what.to_string());
    Some(bar)
}

/// Parses sizes like `512`, `64K`, `10M`, `2G`, `1T` (powers of 1024).
pub(crate) fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, ""));
    let base: u64 = digits.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let shift = match unit
        .trim_end_matches(['i', 'B', 'b'])
        .to_ascii_uppercase()
        .as_str()
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("invalid size unit in {s:?}")),
    };
    base.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub(crate) fn utc(secs: i64) -> String {
    layerstore::rfc3339(secs)
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_string()
}
