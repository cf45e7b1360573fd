//! Every figure's raw per-trial data, written next to the printed summary so
//! any figure in BENCHMARKS.md can be recomputed: one CSV per bench run,
//! `target/bench/<suite>/samples-<UTC time>.csv`, with the rows
//! `figure,trial,value,unit`.
//!
//! The sink is process-wide, like a logger: a bench run opens it once
//! ([`open`]), and the summaries ([`super::measure::summary`] and the
//! suites' own) record what they summarise, so no figure can be printed
//! without its samples being kept.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

struct Sink {
    path: PathBuf,
    file: BufWriter<File>,
}

/// Opens this run's CSV for `suite` and returns its path. Until it is
/// opened (unit tests, smoke runs of a helper), recording writes nothing.
pub fn open(suite: &str) -> Result<PathBuf> {
    let dir = ferrolb_tests::tools::target_dir().join("bench").join(suite);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = std::process::Command::new("date")
        .args(["-u", "+%Y%m%dT%H%M%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let path = dir.join(format!("samples-{stamp}.csv"));
    let mut file = BufWriter::new(
        File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(file, "figure,trial,value,unit")?;
    file.flush()?;
    *lock() = Some(Sink {
        path: path.clone(),
        file,
    });
    Ok(path)
}

/// Records one figure's samples, in the order they were taken.
pub fn record(figure: &str, unit: &str, values: impl IntoIterator<Item = f64>) {
    let mut sink = lock();
    let Some(sink) = sink.as_mut() else {
        return;
    };
    let figure = csv_field(figure);
    let unit = csv_field(unit);
    let written = values
        .into_iter()
        .enumerate()
        .try_for_each(|(trial, value)| writeln!(sink.file, "{figure},{trial},{value},{unit}"))
        .and_then(|()| sink.file.flush());
    if let Err(e) = written {
        eprintln!("raw samples: writing {}: {e}", sink.path.display());
    }
}

/// Records duration samples in milliseconds.
pub fn record_ms(figure: &str, values: impl IntoIterator<Item = std::time::Duration>) {
    record(
        figure,
        "ms",
        values.into_iter().map(|d| d.as_secs_f64() * 1000.0),
    );
}

/// A CSV field: quoted, with quotes doubled, when it holds a comma or quote.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\"").replace('\n', " "))
    } else {
        text.to_string()
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Sink>> {
    SINK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_commas_or_quotes_are_quoted() {
        assert_eq!(csv_field("plain figure"), "plain figure");
        assert_eq!(
            csv_field("create -> IP, p50 \"cold\""),
            "\"create -> IP, p50 \"\"cold\"\"\""
        );
    }
}
