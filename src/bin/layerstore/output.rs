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
        // Results come after the work: its bar goes first.
        $crate::output::finish_progress();
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

/// The bar of the long operation under way, if stderr is a terminal.
static PROGRESS: std::sync::Mutex<Option<(String, ProgressBar)>> = std::sync::Mutex::new(None);

/// The store's progress notice (see `Store::with_progress`): one bar per
/// task, replaced when the task changes, on a terminal's stderr only.
pub(crate) fn show_progress(task: &str, done: u64, total: u64) {
    if !io::stderr().is_terminal() {
        return;
    }
    let mut slot = PROGRESS.lock().unwrap_or_else(|p| p.into_inner());
    if slot.as_ref().is_none_or(|(current, _)| current != task) {
        if let Some((_, bar)) = slot.take() {
            bar.finish_and_clear();
        }
        if let Some(bar) = progress_bar((total > 0).then_some(total), task) {
            *slot = Some((task.to_string(), bar));
        }
    }
    if let Some((_, bar)) = slot.as_ref() {
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(done);
    }
}

/// Clears the bar of the last operation, if any.
pub(crate) fn finish_progress() {
    let mut slot = PROGRESS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, bar)) = slot.take() {
        bar.finish_and_clear();
    }
}

/// Parses sizes like `512`, `64K`, `10M`, `2G`, `1T` (powers of 1024).
pub(crate) fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, ""));
    let shift = match unit
        .trim()
        .trim_end_matches(['i', 'B', 'b'])
        .to_ascii_uppercase()
        .as_str()
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("invalid size unit in {s:?} (use K, M, G or T)")),
    };
    let too_large = || format!("size {s:?} is too large");
    if number.contains('.') {
        // `1.5G`: a fraction of the unit, rounded down to whole bytes.
        let value: f64 = number.parse().map_err(|_| format!("invalid size {s:?}"))?;
        let bytes = value * (1u64 << shift) as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(too_large());
        }
        return Ok(bytes as u64);
    }
    let base: u64 = number.parse().map_err(|_| format!("invalid size {s:?}"))?;
    base.checked_mul(1 << shift).ok_or_else(too_large)
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

/// A path for one line of text output: control characters (a newline in a
/// file name) and backslashes escaped, so that each path stays one line.
pub(crate) fn escape_controls(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '\\' || c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc(secs: i64) -> String {
    let time = layerstore::rfc3339(secs).replacen('T', " ", 1);
    format!("{} UTC", time.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("0.5k"), Ok(512));
        assert!(parse_size("1.2.3G").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("a\nb\\c\td"), "a\\nb\\\\c\\td");
        assert_eq!(escape_controls("plain/ü"), "plain/ü");
    }

    #[test]
    fn times_say_their_zone() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    }
}
