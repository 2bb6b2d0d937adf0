//! Running git and nix: the one place pcr-ci starts a child process, so every child streams
//! its output line by line and dies with the pcr-ci thread that started it.

use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// A command's outcome: its exit status and, when asked for, its whole stdout.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

pub use support::process::command;

/// Runs `cmd` to completion. Every line of stderr — and of stdout unless `capture_stdout` —
/// goes to `on_line` as it arrives; with `capture_stdout`, stdout is returned whole instead
/// (JSON that nix prints there).
pub async fn run(
    mut cmd: Command,
    capture_stdout: bool,
    mut on_line: impl FnMut(Stream, &str),
) -> std::io::Result<Finished> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut captured = String::new();
    let mut out_lines = stdout.map(lines);
    let mut err_lines = stderr.map(lines);
    // Read both pipes until both close, in arrival order, so a viewer sees a build's output
    // interleaved as it happened.
    loop {
        tokio::select! {
            line = next(&mut out_lines), if out_lines.is_some() => match line {
                Some(line) if capture_stdout => {
                    captured.push_str(&line);
                    captured.push('\n');
                }
                Some(line) => on_line(Stream::Stdout, &line),
                None => out_lines = None,
            },
            line = next(&mut err_lines), if err_lines.is_some() => match line {
                Some(line) => on_line(Stream::Stderr, &line),
                None => err_lines = None,
            },
            else => break,
        }
    }
    let status = child.wait().await?;
    Ok(Finished {
        status,
        stdout: captured,
    })
}

type Lines = tokio::io::Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>;

fn lines(reader: impl AsyncRead + Unpin + Send + 'static) -> Lines {
    BufReader::new(Box::new(reader) as Box<dyn AsyncRead + Unpin + Send>).lines()
}

/// The next line, `None` at the end. A read error ends the stream too: the exit status still
/// says whether the command worked, and the lines so far are kept.
async fn next(lines: &mut Option<Lines>) -> Option<String> {
    match lines {
        Some(l) => l.next_line().await.ok().flatten(),
        None => None,
    }
}

/// A short sentence for an exit status: "exit code 3", "killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "an unknown status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_lines_of_both_pipes_and_captures_stdout_on_request() {
        let mut cmd = command("sh");
        cmd.args(["-c", "echo out1; echo err1 >&2; echo out2; exit 3"]);
        let mut seen = Vec::new();
        let done = run(cmd, true, |s, l| seen.push((s, l.to_string())))
            .await
            .expect("run sh");
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.stdout, "out1\nout2\n");
        assert_eq!(seen, [(Stream::Stderr, "err1".to_string())]);
        assert_eq!(describe(done.status), "exit code 3");

        let mut cmd = command("sh");
        cmd.args(["-c", "echo a; echo b >&2"]);
        let mut seen = Vec::new();
        run(cmd, false, |_, l| seen.push(l.to_string()))
            .await
            .expect("run sh");
        seen.sort();
        assert_eq!(seen, ["a", "b"]);
    }
}
