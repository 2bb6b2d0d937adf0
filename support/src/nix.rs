//! Invoking nix: the settings every invocation gets, and reading what it printed.

/// What every nix invocation needs: flakes. Appended to by `NIX_CONFIG` from the environment
/// (on machines without a reachable substituter, `substituters =` there saves seconds a build).
const BASE_CONFIG: &str = "experimental-features = nix-command flakes";

/// The `NIX_CONFIG` Procurator gives nix: [`BASE_CONFIG`], then whatever the environment says.
pub fn nix_config() -> String {
    match std::env::var("NIX_CONFIG") {
        Ok(extra) if !extra.trim().is_empty() => format!("{BASE_CONFIG}\n{extra}"),
        _ => BASE_CONFIG.to_string(),
    }
}

/// A `nix` command with [`nix_config`].
pub fn command() -> tokio::process::Command {
    let mut cmd = crate::process::command("nix");
    cmd.env("NIX_CONFIG", nix_config());
    cmd
}

/// Drops terminal colour codes nix puts in its messages.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates up to a final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The line that says what went wrong: the first `error:` line (nix puts the reason there and
/// the trace after it), else the last line printed.
pub fn first_error(lines: &[String]) -> String {
    let error = lines
        .iter()
        .position(|l| l.trim_start().starts_with("error:"));
    match error {
        Some(i) => {
            // nix continues a message on indented lines; keep the sentence, not the trace.
            let mut text = lines[i].trim().to_string();
            for more in lines[i + 1..].iter().take(3) {
                let t = more.trim();
                if t.is_empty()
                    || t.starts_with("at ")
                    || t.starts_with('…')
                    || t.contains("--show-trace")
                {
                    break;
                }
                text.push(' ');
                text.push_str(t);
            }
            text
        }
        None => lines
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| "it printed nothing".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_are_dropped() {
        assert_eq!(strip_ansi("\u{1b}[1mbold\u{1b}[0m plain"), "bold plain");
    }

    #[test]
    fn the_error_line_is_the_sentence_not_the_trace() {
        let lines: Vec<String> = [
            "evaluating flake...",
            "error: cluster.vms.web.cpu: expected an integer between 1 and 1024, got 0",
            "       (defined in /nix/store/x-source/cluster.nix)",
            "",
            "       at /nix/store/x-source/lib/modules.nix:1:2:",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            first_error(&lines),
            "error: cluster.vms.web.cpu: expected an integer between 1 and 1024, got 0 (defined in /nix/store/x-source/cluster.nix)"
        );
        assert_eq!(first_error(&["a".into(), "b".into(), " ".into()]), "b");
        assert_eq!(first_error(&[]), "it printed nothing");
    }
}
