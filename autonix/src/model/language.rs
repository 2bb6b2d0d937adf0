//! The languages autonix recognises; the scan decides which one a file is written in.
//!
//! Only languages that say something about how a repository is built or run are listed:
//! programming languages, shells, Nix and the web trio. Data formats (JSON, YAML, Markdown)
//! are left out on purpose — every repository has them and they would drown the signal.

use serde::{Deserialize, Serialize};

/// A language autonix recognises. The serialized name is the one shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Language {
    C,
    #[serde(rename = "C++")]
    Cpp,
    #[serde(rename = "C#")]
    CSharp,
    Clojure,
    #[serde(rename = "CSS")]
    Css,
    Dart,
    Dockerfile,
    Elixir,
    Erlang,
    Go,
    Haskell,
    #[serde(rename = "HTML")]
    Html,
    Java,
    JavaScript,
    Kotlin,
    Lua,
    Nix,
    OCaml,
    Perl,
    #[serde(rename = "PHP")]
    Php,
    Python,
    Ruby,
    Rust,
    Scala,
    Shell,
    Swift,
    TypeScript,
    Zig,
}

impl Language {
    /// The display name, identical to the serialized one.
    pub fn name(self) -> &'static str {
        match self {
            Language::C => "C",
            Language::Cpp => "C++",
            Language::CSharp => "C#",
            Language::Clojure => "Clojure",
            Language::Css => "CSS",
            Language::Dart => "Dart",
            Language::Dockerfile => "Dockerfile",
            Language::Elixir => "Elixir",
            Language::Erlang => "Erlang",
            Language::Go => "Go",
            Language::Haskell => "Haskell",
            Language::Html => "HTML",
            Language::Java => "Java",
            Language::JavaScript => "JavaScript",
            Language::Kotlin => "Kotlin",
            Language::Lua => "Lua",
            Language::Nix => "Nix",
            Language::OCaml => "OCaml",
            Language::Perl => "Perl",
            Language::Php => "PHP",
            Language::Python => "Python",
            Language::Ruby => "Ruby",
            Language::Rust => "Rust",
            Language::Scala => "Scala",
            Language::Shell => "Shell",
            Language::Swift => "Swift",
            Language::TypeScript => "TypeScript",
            Language::Zig => "Zig",
        }
    }
}
