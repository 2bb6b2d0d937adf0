//! The narinfo format: parsing what `nix copy` uploads, rendering what Nix downloads, and the
//! fingerprint that signatures cover.

use std::fmt::Write as _;

use crate::names::{self, Compression, StoreHash};

/// A SHA-256 digest as it appears in narinfos (`sha256:<nixbase32>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// Parses `sha256:` followed by Nix's base-32 (what Nix writes) or base-16.
    pub fn parse(s: &str) -> Option<Sha256> {
        let digest = s.strip_prefix("sha256:")?;
        let bytes = match digest.len() {
            names::SHA256_BASE32_LEN if names::is_nix_base32(digest) => {
                nix_base32::from_nix_base32(digest)?
            }
            64 => decode_hex(digest)?,
            _ => return None,
        };
        bytes.try_into().ok().map(Sha256)
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", nix_base32::to_nix_base32(&self.0))
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why an uploaded narinfo was refused; each message names the offending field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("line {0:?} is not of the form `Key: value`")]
    Line(String),
    #[error("field {0} is missing")]
    Missing(&'static str),
    #[error("field {0} appears twice")]
    Duplicate(&'static str),
    #[error("StorePath {0:?} is not a valid store path in {1}")]
    StorePath(String, String),
    #[error("{field} {value:?} is not a valid value")]
    Invalid { field: &'static str, value: String },
}

/// The fields of a narinfo that this cache understands. Unknown fields are dropped, as Nix
/// itself ignores them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NarInfo {
    /// Full store path, e.g. `/nix/store/<hash>-hello`.
    pub store_path: String,
    pub url: String,
    pub compression: Compression,
    pub file_hash: Option<Sha256>,
    pub file_size: Option<u64>,
    pub nar_hash: Sha256,
    pub nar_size: u64,
    /// Base names (`<hash>-<name>`), as they appear on the `References:` line.
    pub references: Vec<String>,
    pub deriver: Option<String>,
    /// `Sig:` values, `<key name>:<base64 signature>`.
    pub sigs: Vec<String>,
    pub ca: Option<String>,
}

impl NarInfo {
    /// Parses and validates a narinfo for a store in `store_dir`.
    pub fn parse(store_dir: &str, text: &str) -> Result<NarInfo, ParseError> {
        let mut store_path = None;
        let mut url = None;
        let mut compression = None;
        let mut file_hash = None;
        let mut file_size = None;
        let mut nar_hash = None;
        let mut nar_size = None;
        let mut references = None;
        let mut deriver = None;
        let mut sigs = Vec::new();
        let mut ca = None;

        fn set<T>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), ParseError> {
            if slot.replace(value).is_some() {
                return Err(ParseError::Duplicate(field));
            }
            Ok(())
        }
        fn invalid(field: &'static str, value: &str) -> ParseError {
            ParseError::Invalid {
                field,
                value: value.to_owned(),
            }
        }
        fn number(field: &'static str, value: &str) -> Result<u64, ParseError> {
            value.parse().map_err(|_| invalid(field, value))
        }
        fn hash(field: &'static str, value: &str) -> Result<Sha256, ParseError> {
            Sha256::parse(value).ok_or_else(|| invalid(field, value))
        }

        for line in text.lines().filter(|l| !l.is_empty()) {
            // `References: ` with nothing after it is how Nix writes an empty list.
            let (key, value) = line
                .split_once(": ")
                .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
                .ok_or_else(|| ParseError::Line(line.to_owned()))?;
            match key {
                "StorePath" => {
                    if names::base_name_in(store_dir, value).is_none() {
                        return Err(ParseError::StorePath(
                            value.to_owned(),
                            store_dir.to_owned(),
                        ));
                    }
                    set(&mut store_path, "StorePath", value.to_owned())?
                }
                "URL" => set(&mut url, "URL", value.to_owned())?,
                "Compression" => set(
                    &mut compression,
                    "Compression",
                    Compression::parse(value).ok_or_else(|| invalid("Compression", value))?,
                )?,
                "FileHash" => set(&mut file_hash, "FileHash", hash("FileHash", value)?)?,
                "FileSize" => set(&mut file_size, "FileSize", number("FileSize", value)?)?,
                "NarHash" => set(&mut nar_hash, "NarHash", hash("NarHash", value)?)?,
                "NarSize" => set(&mut nar_size, "NarSize", number("NarSize", value)?)?,
                "References" => {
                    let refs = value
                        .split_ascii_whitespace()
                        .map(|r| {
                            names::split_base_name(r)
                                .map(|_| r.to_owned())
                                .ok_or_else(|| invalid("References", r))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    set(&mut references, "References", refs)?
                }
                "Deriver" => {
                    // Nix writes `unknown-deriver` for paths whose deriver it does not know.
                    if value != "unknown-deriver" && names::split_base_name(value).is_none() {
                        return Err(invalid("Deriver", value));
                    }
                    set(&mut deriver, "Deriver", value.to_owned())?
                }
                "Sig" => {
                    if !value.contains(':') || value.chars().any(char::is_whitespace) {
                        return Err(invalid("Sig", value));
                    }
                    sigs.push(value.to_owned())
                }
                "CA" => set(&mut ca, "CA", value.to_owned())?,
                _ => {}
            }
        }

        Ok(NarInfo {
            store_path: store_path.ok_or(ParseError::Missing("StorePath"))?,
            url: url.ok_or(ParseError::Missing("URL"))?,
            // Nix's own reader defaults a missing Compression to bzip2, which this cache does
            // not store; asking for the field is clearer than guessing.
            compression: compression.ok_or(ParseError::Missing("Compression"))?,
            file_hash,
            file_size,
            nar_hash: nar_hash.ok_or(ParseError::Missing("NarHash"))?,
            nar_size: nar_size.ok_or(ParseError::Missing("NarSize"))?,
            references: references.unwrap_or_default(),
            deriver,
            sigs,
            ca,
        })
    }

    /// The hash part of the store path: the name this narinfo is served under.
    pub fn hash(&self) -> Option<StoreHash> {
        let base = self.store_path.rsplit('/').next()?;
        names::split_base_name(base).map(|(hash, _)| hash)
    }

    /// The hash parts of the references, without the path itself.
    pub fn reference_hashes(&self) -> Vec<StoreHash> {
        let own = self.hash();
        self.references
            .iter()
            .filter_map(|r| names::split_base_name(r).map(|(h, _)| h))
            .filter(|h| Some(h) != own.as_ref())
            .collect()
    }

    /// What a signature covers, exactly as Nix computes it
    /// (`ValidPathInfo::fingerprint`): references as full paths, sorted.
    pub fn fingerprint(&self, store_dir: &str) -> String {
        let mut refs: Vec<&String> = self.references.iter().collect();
        refs.sort();
        let refs: Vec<String> = refs.iter().map(|r| format!("{store_dir}/{r}")).collect();
        format!(
            "1;{};{};{};{}",
            self.store_path,
            self.nar_hash,
            self.nar_size,
            refs.join(",")
        )
    }

    /// Renders the narinfo the way Nix writes it, final newline included (Nix needs it).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(512);
        // Writing to a String cannot fail.
        let _ = writeln!(out, "StorePath: {}", self.store_path);
        let _ = writeln!(out, "URL: {}", self.url);
        let _ = writeln!(out, "Compression: {}", self.compression.as_str());
        if let Some(h) = &self.file_hash {
            let _ = writeln!(out, "FileHash: {h}");
        }
        if let Some(s) = self.file_size {
            let _ = writeln!(out, "FileSize: {s}");
        }
        let _ = writeln!(out, "NarHash: {}", self.nar_hash);
        let _ = writeln!(out, "NarSize: {}", self.nar_size);
        let _ = writeln!(out, "References: {}", self.references.join(" "));
        if let Some(d) = &self.deriver {
            let _ = writeln!(out, "Deriver: {d}");
        }
        for s in &self.sigs {
            let _ = writeln!(out, "Sig: {s}");
        }
        if let Some(ca) = &self.ca {
            let _ = writeln!(out, "CA: {ca}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Laid out field for field as nix 2.8 writes a narinfo (hashes made up).
    const SAMPLE: &str = "StorePath: /nix/store/9rnpp5b9bzrhvbvn5mf0jd8iq3qrcwn4-mid
URL: nar/1c6yqy5sqw3ljx1hmlkd5gi1p0vkl8fxvbn9n1bcz9sbxmq6lmv8.nar.xz
Compression: xz
FileHash: sha256:1c6yqy5sqw3ljx1hmlkd5gi1p0vkl8fxvbn9n1bcz9sbxmq6lmv8
FileSize: 248
NarHash: sha256:0v1x0hz4kzd1ns1nrl4g1j2ghb3ks06mxr89iyx3pdla4q9fyzsl
NarSize: 440
References: 9rnpp5b9bzrhvbvn5mf0jd8iq3qrcwn4-mid j3j7v3ddvrkqgi4f3rilx9m1h2hpzzmk-leaf
Deriver: 2hh4lbv1m5rr3a9ic5bb5q1b4m2rwrhp-mid.drv
Sig: test-1:iw8I2ZsJcPmmdVA0xHxUqpkI9uKnn8TzsQlv6AUOTqZ9yxr2p2tHyl9a9LwHBS3AU3J2RZU3fhq9FNcAs8fLDA==
";

    #[test]
    fn parse_render_round_trip() {
        let info = NarInfo::parse("/nix/store", SAMPLE).expect("sample parses");
        assert_eq!(info.compression, Compression::Xz);
        assert_eq!(info.nar_size, 440);
        assert_eq!(info.references.len(), 2);
        assert_eq!(
            info.hash().map(|h| h.to_string()).as_deref(),
            Some("9rnpp5b9bzrhvbvn5mf0jd8iq3qrcwn4")
        );
        assert_eq!(info.render(), SAMPLE);
    }

    #[test]
    fn fingerprint_matches_nix() {
        let info = NarInfo::parse("/nix/store", SAMPLE).expect("sample parses");
        assert_eq!(
            info.fingerprint("/nix/store"),
            "1;/nix/store/9rnpp5b9bzrhvbvn5mf0jd8iq3qrcwn4-mid;\
             sha256:0v1x0hz4kzd1ns1nrl4g1j2ghb3ks06mxr89iyx3pdla4q9fyzsl;440;\
             /nix/store/9rnpp5b9bzrhvbvn5mf0jd8iq3qrcwn4-mid,\
             /nix/store/j3j7v3ddvrkqgi4f3rilx9m1h2hpzzmk-leaf"
        );
        let hashes: Vec<String> = info
            .reference_hashes()
            .iter()
            .map(|h| h.to_string())
            .collect();
        assert_eq!(hashes, ["j3j7v3ddvrkqgi4f3rilx9m1h2hpzzmk"]);
    }

    #[test]
    fn empty_references_line() {
        let text = SAMPLE.replace(
            "References: 9rnpp5b9bzrhvbvn5mf0jd8iq3qrcwn4-mid j3j7v3ddvrkqgi4f3rilx9m1h2hpzzmk-leaf",
            "References: ",
        );
        let info = NarInfo::parse("/nix/store", &text).expect("parses");
        assert!(info.references.is_empty());
        assert!(info.render().contains("\nReferences: \n"));
        assert!(info.fingerprint("/nix/store").ends_with(";440;"));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: Vec<(String, ParseError)> = vec![
            (
                SAMPLE.replace("StorePath: /nix/store/", "StorePath: /nix/store/../"),
                ParseError::StorePath(
                    "/nix/store/../9rnpp5b9bzrhvbvn5mf0jd8iq3qrcwn4-mid".into(),
                    "/nix/store".into(),
                ),
            ),
            (
                SAMPLE.replace("NarSize: 440", "NarSize: -1"),
                ParseError::Invalid {
                    field: "NarSize",
                    value: "-1".into(),
                },
            ),
            (
                SAMPLE.replace("Compression: xz", "Compression: bzip2"),
                ParseError::Invalid {
                    field: "Compression",
                    value: "bzip2".into(),
                },
            ),
            (
                SAMPLE.replace("NarHash: sha256:0v1x", "NarHash: md5:0v1x"),
                ParseError::Invalid {
                    field: "NarHash",
                    value: "md5:0v1x0hz4kzd1ns1nrl4g1j2ghb3ks06mxr89iyx3pdla4q9fyzsl".into(),
                },
            ),
            (
                SAMPLE.replace("-leaf\n", "-../leaf\n"),
                ParseError::Invalid {
                    field: "References",
                    value: "j3j7v3ddvrkqgi4f3rilx9m1h2hpzzmk-../leaf".into(),
                },
            ),
            (
                SAMPLE.replace("NarSize: 440\n", ""),
                ParseError::Missing("NarSize"),
            ),
            (
                format!("{SAMPLE}NarSize: 1\n"),
                ParseError::Duplicate("NarSize"),
            ),
            (
                SAMPLE.replace("URL: ", "URL="),
                ParseError::Line(
                    "URL=nar/1c6yqy5sqw3ljx1hmlkd5gi1p0vkl8fxvbn9n1bcz9sbxmq6lmv8.nar.xz".into(),
                ),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(NarInfo::parse("/nix/store", &text), Err(expected));
        }
    }

    #[test]
    fn sha256_accepts_base16() {
        let b32 = Sha256::parse("sha256:0v1x0hz4kzd1ns1nrl4g1j2ghb3ks06mxr89iyx3pdla4q9fyzsl")
            .expect("base32");
        let hex: String = b32.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Sha256::parse(&format!("sha256:{hex}")), Some(b32));
        assert_eq!(Sha256::parse("sha256:zz"), None);
    }
}
