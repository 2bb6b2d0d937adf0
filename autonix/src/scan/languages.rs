//! Which language a file is written in, from its name, its extension or its shebang line.

use crate::model::Language;

/// The language of a file judged from its name alone; `None` when the name says nothing
/// (then a caller may look at the shebang with [`by_shebang`]).
pub fn by_name(file_name: &str) -> Option<Language> {
    // Whole names first: they beat extensions (`CMakeLists.txt` is not prose).
    let by_whole = match file_name {
        "Dockerfile" | "Containerfile" => Some(Language::Dockerfile),
        "Rakefile" | "Gemfile" | "Guardfile" | "config.ru" => Some(Language::Ruby),
        "SConstruct" | "SConscript" => Some(Language::Python),
        _ => None,
    };
    if by_whole.is_some() {
        return by_whole;
    }
    if file_name.starts_with("Dockerfile.") {
        return Some(Language::Dockerfile);
    }
    let ext = file_name.rsplit_once('.')?.1;
    Some(match ext {
        "c" | "h" => Language::C,
        "cc" | "cpp" | "cxx" | "c++" | "hh" | "hpp" | "hxx" | "ipp" => Language::Cpp,
        "cs" => Language::CSharp,
        "clj" | "cljs" | "cljc" | "edn" => Language::Clojure,
        "css" | "scss" | "sass" | "less" => Language::Css,
        "dart" => Language::Dart,
        "dockerfile" => Language::Dockerfile,
        "ex" | "exs" | "heex" | "eex" => Language::Elixir,
        "erl" | "hrl" => Language::Erlang,
        "go" => Language::Go,
        "hs" | "lhs" => Language::Haskell,
        "html" | "htm" => Language::Html,
        "java" => Language::Java,
        "js" | "mjs" | "cjs" | "jsx" => Language::JavaScript,
        "kt" | "kts" => Language::Kotlin,
        "lua" => Language::Lua,
        "nix" => Language::Nix,
        "ml" | "mli" => Language::OCaml,
        "pl" | "pm" => Language::Perl,
        "php" => Language::Php,
        "py" | "pyi" | "pyw" => Language::Python,
        "rb" | "erb" | "rake" | "gemspec" => Language::Ruby,
        "rs" => Language::Rust,
        "scala" | "sc" => Language::Scala,
        "sh" | "bash" | "zsh" | "ksh" => Language::Shell,
        "swift" => Language::Swift,
        "ts" | "tsx" | "mts" | "cts" => Language::TypeScript,
        "zig" | "zon" => Language::Zig,
        _ => return None,
    })
}

/// The language named by a `#!` line at the start of `head`, following `env` indirection
/// (`#!/usr/bin/env -S python3 -u` is Python).
pub fn by_shebang(head: &[u8]) -> Option<Language> {
    let rest = head.strip_prefix(b"#!")?;
    let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    let line = std::str::from_utf8(&rest[..line_end]).ok()?;
    let mut words = line.split_whitespace();
    let mut program = words.next()?.rsplit('/').next()?;
    if program == "env" {
        program = words.find(|w| !w.starts_with('-'))?;
    }
    // Strip version suffixes: python3.12, ruby3.2, perl5.
    let base = program.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    Some(match base {
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash" => Language::Shell,
        "python" | "pypy" => Language::Python,
        "ruby" => Language::Ruby,
        "node" | "nodejs" | "deno" | "bun" => Language::JavaScript,
        "perl" => Language::Perl,
        "php" => Language::Php,
        "lua" | "luajit" => Language::Lua,
        "elixir" => Language::Elixir,
        "escript" => Language::Erlang,
        "nix-shell" => Language::Nix,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_extensions() {
        let cases = [
            ("main.rs", Some(Language::Rust)),
            ("Dockerfile", Some(Language::Dockerfile)),
            ("Dockerfile.prod", Some(Language::Dockerfile)),
            ("api.dockerfile", Some(Language::Dockerfile)),
            ("Gemfile", Some(Language::Ruby)),
            ("index.tsx", Some(Language::TypeScript)),
            ("lib.hpp", Some(Language::Cpp)),
            ("README.md", None),
            ("Makefile", None),
            ("noext", None),
        ];
        for (name, want) in cases {
            assert_eq!(by_name(name), want, "{name}");
        }
    }

    #[test]
    fn shebangs() {
        let cases: [(&[u8], Option<Language>); 7] = [
            (b"#!/bin/sh\necho", Some(Language::Shell)),
            (b"#!/usr/bin/env python3\n", Some(Language::Python)),
            (b"#!/usr/bin/env -S python3.12 -u\n", Some(Language::Python)),
            (b"#!/usr/bin/ruby2.7 -w\n", Some(Language::Ruby)),
            (b"#!/usr/bin/env node", Some(Language::JavaScript)),
            (b"#!/usr/bin/unknown\n", None),
            (b"\x7fELF\x02\x01", None),
        ];
        for (head, want) in cases {
            assert_eq!(
                by_shebang(head),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
