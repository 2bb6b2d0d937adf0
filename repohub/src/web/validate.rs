//! Input rules: names, usernames, passwords, branches and remotes, checked the same way for forms and JSON.

use super::error::AppError;

use super::error::Result;

/// Project and repository names: they appear in URLs and, joined by `.`, as pcr-ci's
/// repository name, so they have no `.` and no upper case.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    slug(&format!("{what} name"), name, 40)
}

pub fn validate_username(name: &str) -> Result<()> {
    slug("username", name, 32)
}

/// 1-`max` characters of a-z, 0-9, `-` and `_`, starting with a letter or digit.
fn slug(what: &str, name: &str, max: usize) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "{what} `{name}` must be 1-{max} characters of a-z, 0-9, `-` and `_`, starting with a letter or digit"
        )))
    }
}

pub fn validate_password(p: &str) -> Result<()> {
    if p.chars().count() < 8 {
        return Err(AppError::bad_request(
            "the password must be at least 8 characters long",
        ));
    }
    if p.len() > 1024 {
        return Err(AppError::bad_request(
            "the password must be at most 1024 bytes long",
        ));
    }
    Ok(())
}

/// A branch name git and pcr-ci both accept, simplified to what people use.
pub fn validate_branch(b: &str) -> Result<()> {
    let ok = !b.is_empty()
        && b.len() <= 100
        && !b.starts_with(['-', '/', '.'])
        && !b.ends_with(['/', '.'])
        && !b.contains("..")
        && !b.contains("//")
        && !b.ends_with(".lock")
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_./".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "branch `{b}` is not a valid branch name; use letters, digits, `-`, `_`, `.` and `/`"
        )))
    }
}

/// The remote of an external repository: `https://`, `http://`, `ssh://`, `git://` or
/// scp-like `user@host:path`. Credentials in the URL are refused: they would be shown on
/// the page and stored in plain text; pcr-ci reads them from its netrc.
pub fn validate_remote(url: &str) -> Result<String> {
    let url = url.trim();
    if url.is_empty() {
        return Err(AppError::bad_request(
            "an external repository needs its URL, e.g. https://git.example.com/team/web.git",
        ));
    }
    if url.len() > 500 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AppError::bad_request(format!(
            "`{url}` is not a repository URL: it has spaces or is longer than 500 characters"
        )));
    }
    if let Some((user_host, path)) = url.split_once(':') {
        // scp-like syntax has no `//` after the colon and a user@host before it.
        if !url.contains("://") && user_host.contains('@') && !path.is_empty() {
            return Ok(url.to_string());
        }
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        AppError::bad_request(format!(
            "`{url}` is not a repository URL ({e}); use https://host/path.git or git@host:path.git"
        ))
    })?;
    if !matches!(parsed.scheme(), "https" | "http" | "ssh" | "git") {
        return Err(AppError::bad_request(format!(
            "`{}` URLs are not supported; use https, http, ssh or git",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(AppError::bad_request(format!("`{url}` has no host")));
    }
    if parsed.password().is_some() {
        return Err(AppError::bad_request(
            "do not put a password in the URL; give pcr-ci the credentials in its netrc file",
        ));
    }
    Ok(url.to_string())
}
