//! Running the external programs a build needs (python3, pip, node, npm,
//! componentize-py, jco) so that a failure says which command failed and shows
//! the end of what it printed.

use std::io;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

/// Lines of a failed command's output kept in the error: enough for a Python
/// traceback or an npm error block, short enough to read.
const TAIL_LINES: usize = 40;

/// Runs `cmd` to completion with stdin closed and its output captured; fails with
/// the command line, its exit status and the tail of its output unless it succeeds.
pub(crate) fn run(cmd: &mut Command) -> Result<Output> {
    let line = describe(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| not_runnable(&line, e))?;
    if !output.status.success() {
        bail!(
            "`{line}` failed ({}):\n{}",
            output.status,
            output_tail(&output)
        );
    }
    Ok(output)
}

/// Checks that `program --version` runs, and returns what it printed (trimmed).
/// `needed_for` completes "… is needed to …"; `hint` says how to get the program.
pub(crate) fn require(program: &str, needed_for: &str, hint: &str) -> Result<String> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(output) if output.status.success() => {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        }
        Ok(output) => bail!(
            "`{program} --version` failed ({}); {program} is needed to {needed_for} ({hint}):\n{}",
            output.status,
            output_tail(&output)
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!(
                "{program} is not installed (not found on PATH); it is needed to {needed_for} ({hint})"
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot run {program}")),
    }
}

/// Checks that `python3` and its `pip` work; `needed_for` completes "… is needed to …".
pub(crate) fn require_python_pip(needed_for: &str) -> Result<()> {
    require("python3", needed_for, "install Python 3")?;
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "--version"]);
    run(&mut pip).with_context(|| {
        format!(
            "pip is not installed for python3 (install python3-pip); it is needed to {needed_for}"
        )
    })?;
    Ok(())
}

fn not_runnable(line: &str, e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::NotFound {
        anyhow::anyhow!("cannot run `{line}`: the program was not found")
    } else {
        anyhow::Error::new(e).context(format!("cannot run `{line}`"))
    }
}

/// The program and its arguments, as one line for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last [`TAIL_LINES`] lines of stdout then stderr, each marked, skipping empty streams.
pub(crate) fn output_tail(output: &Output) -> String {
    let mut text = String::new();
    for (name, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let stream = String::from_utf8_lossy(bytes);
        if stream.trim().is_empty() {
            continue;
        }
        text.push_str(&format!("--- {name} (last {TAIL_LINES} lines) ---\n"));
        text.push_str(&tail(&stream, TAIL_LINES));
        text.push('\n');
    }
    if text.is_empty() {
        text.push_str("(no output)");
    }
    text
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let text: String = (1..=50).map(|n| format!("line {n}\n")).collect();
        let kept = tail(&text, 3);
        assert_eq!(kept, "line 48\nline 49\nline 50");
        assert_eq!(tail("one\n", 3), "one");
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_command_names_itself_and_shows_its_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo progress; echo 'it broke' >&2; exit 3"]);
        let err = run(&mut cmd).expect_err("must fail");
        let text = format!("{err:#}");
        assert!(text.contains("`sh -c echo progress;"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(
            text.contains("it broke") && text.contains("progress"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_program_is_named() {
        let err = require("sluice-no-such-program", "test things", "it never existed")
            .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "sluice-no-such-program is not installed (not found on PATH); it is needed to test things (it never existed)"
        );
    }
}
