//! Listen calls in entry files: `http.ListenAndServe(":3333", …)`, `app.listen(3000)`,
//! `.bind(("0.0.0.0", 8080))`, `app.run(port=5000)` — the evidence that a program serves,
//! and on which port, when no configuration says so.

use crate::detect::{ev_line, in_example_or_test_dir, Ctx, Out};
use crate::model::{confidence, Facts};

/// Calls that open a listening socket, with the port somewhere in their arguments.
const CALLS: &[&str] = &[
    "ListenAndServe(",
    "ListenAndServeTLS(",
    "net.Listen(",
    ".Listen(",
    ".Start(",
    ".Run(",
    ".listen(",
    ".bind(",
    "TcpListener::bind(",
    "app.run(",
    "uvicorn.run(",
    "serve(",
];

/// Entry files whose text the scan keeps, in the order they are trusted.
const ENTRY_FILES: &[&str] = &[
    "main.go",
    "src/main.rs",
    "server.js",
    "server.ts",
    "src/server.js",
    "src/server.ts",
    "index.js",
    "index.ts",
    "src/index.js",
    "src/index.ts",
    "app.js",
    "app.ts",
    "main.js",
    "main.ts",
    "main.py",
    "app.py",
];

pub fn detect(ctx: &Ctx<'_>, out: &mut Out) {
    for file in ENTRY_FILES {
        let Some(text) = ctx.text(file) else {
            continue;
        };
        if let Some((line, port, call)) = listen_port(text) {
            out.add(
                format!("port {port}"),
                confidence::MEDIUM,
                vec![ev_line(
                    ctx.path(file),
                    Some(line),
                    format!("listens on port {port} (`{call}`)"),
                )],
                Facts::Port { port },
            );
            return;
        }
    }
    // Go main packages below the root (`cmd/api/main.go`), not examples.
    if !ctx.has("go.mod") {
        return;
    }
    for f in ctx.find(|p| p.ends_with("/main.go") && !in_example_or_test_dir(p)) {
        let Some(text) = ctx.inv.text(&f.path) else {
            continue;
        };
        if let Some((line, port, call)) = listen_port(text) {
            out.add(
                format!("port {port}"),
                confidence::MEDIUM,
                vec![ev_line(
                    &f.path,
                    Some(line),
                    format!("listens on port {port} (`{call}`)"),
                )],
                Facts::Port { port },
            );
            return;
        }
    }
}

/// The first listen call in `text` that names a port: (line, port, the call as written).
pub fn listen_port(text: &str) -> Option<(u32, u16, String)> {
    for (i, line) in text.lines().enumerate() {
        let code = line.trim();
        if code.starts_with("//") || code.starts_with('#') || code.starts_with("/*") {
            continue;
        }
        // Bun serves a default export with `fetch` on its `port`.
        if let Some(at) = line
            .find("export default {")
            .filter(|_| line.contains("fetch"))
        {
            if let Some(p) = line[at..].find("port:") {
                if let Some(port) = port_in(&line[at + p + "port:".len()..]) {
                    return Some((u32::try_from(i + 1).ok()?, port, code.to_string()));
                }
            }
        }
        for call in CALLS {
            let Some(at) = line.find(call) else {
                continue;
            };
            let args = &line[at + call.len()..];
            if let Some(port) = port_in(args) {
                let end = args.find(')').map_or(args.len(), |e| e + 1);
                let shown = format!("{}{}", call.trim_start_matches('.'), &args[..end]);
                return Some((u32::try_from(i + 1).ok()?, port, shown));
            }
        }
    }
    None
}

/// A port number in call arguments: digits standing alone after `:`, `(`, `=`, `,`, a
/// space or `|`, so the parts of `127.0.0.1` and identifiers never count, and at least 80.
fn port_in(args: &str) -> Option<u16> {
    let args = args.split(')').next().unwrap_or(args);
    let bytes = args.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let before = if start == 0 { b'(' } else { bytes[start - 1] };
            let after = bytes.get(i).copied().unwrap_or(b')');
            let standalone = matches!(before, b':' | b'(' | b'=' | b',' | b' ' | b'|' | b'[')
                && !after.is_ascii_alphanumeric()
                && after != b'.'
                && after != b'_';
            if standalone && (2..=5).contains(&(i - start)) {
                if let Ok(port) = args[start..i].parse::<u16>() {
                    // Small numbers in these calls are counts and timeouts, not ports.
                    if port >= 80 {
                        return Some(port);
                    }
                }
            }
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::listen_port;

    #[test]
    fn listen_calls_name_their_port() {
        let cases = [
            ("\thttp.ListenAndServe(\":3333\", r)\n", Some(3333)),
            (
                "log.Fatal(http.ListenAndServe(\"0.0.0.0:9000\", nil))",
                Some(9000),
            ),
            ("e.Logger.Fatal(e.Start(\":1323\"))", Some(1323)),
            ("r.Run() // listens on 8080 by default", None),
            ("app.listen(process.env.PORT || 3000, () => {})", Some(3000)),
            ("server.listen(8081)", Some(8081)),
            (
                "HttpServer::new(f).bind((\"127.0.0.1\", 8080))?",
                Some(8080),
            ),
            (
                "let l = TcpListener::bind(\"0.0.0.0:3000\").await?;",
                Some(3000),
            ),
            ("    app.run(host=\"0.0.0.0\", port=5000)", Some(5000)),
            ("// http.ListenAndServe(\":1\", nil)", None),
            ("cmd.Run(ctx, 5)", None),
            ("srv.Start(ctx, 30)", None),
            ("conn.bind(addr_v4)", None),
            (
                "export default { port: 3000, fetch() { return r; } };",
                Some(3000),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(listen_port(text).map(|(_, p, _)| p), want, "{text}");
        }
    }
}
