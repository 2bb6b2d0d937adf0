//! Validation of every name that reaches the file system or the index from a request.
//!
//! Nothing here touches the disk: a name that passes these checks is made of a closed set of
//! characters with no `/` and no leading `.`, so joining it to a storage directory can never
//! leave that directory.

use std::fmt;

/// Length of the hash part of a store path (160 bits in Nix's base-32).
pub const STORE_HASH_LEN: usize = 32;
/// Length of a SHA-256 digest in Nix's base-32, as used in NAR file names.
pub const SHA256_BASE32_LEN: usize = 52;
/// Longest store path name Nix accepts (`nix/store-api.cc`: 211 characters).
const MAX_NAME_LEN: usize = 211;

/// Whether `s` is made only of characters of Nix's base-32 alphabet
/// (`0123456789abcdfghijklmnpqrsvwxyz`: no e, o, t, u). Written as ranges because this runs on
/// every narinfo lookup, where a search of the alphabet per byte showed up in profiles.
pub fn is_nix_base32(s: &str) -> bool {
    s.bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'd' | b'f'..=b'n' | b'p'..=b's' | b'v'..=b'z'))
}

/// The 32-character hash part of a store path: the key of a narinfo.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreHash(String);

impl StoreHash {
    pub fn parse(s: &str) -> Option<StoreHash> {
        (s.len() == STORE_HASH_LEN && is_nix_base32(s)).then(|| StoreHash(s.to_owned()))
    }

    /// The hash of a `<hash>.narinfo` file name.
    pub fn from_narinfo_file(file: &str) -> Option<StoreHash> {
        StoreHash::parse(file.strip_suffix(".narinfo")?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` is a store path name Nix itself would accept: letters, digits and `+-._?=`,
/// not starting with a dot, at most 211 characters.
pub fn is_valid_path_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._?=".contains(&b))
}

/// The base name of a store path (`<hash>-<name>`), split into its hash and name.
pub fn split_base_name(base: &str) -> Option<(StoreHash, &str)> {
    let hash = StoreHash::parse(base.get(..STORE_HASH_LEN)?)?;
    let name = base.get(STORE_HASH_LEN..)?.strip_prefix('-')?;
    is_valid_path_name(name).then_some((hash, name))
}

/// The base name of a full store path inside `store_dir`, if it is one.
pub fn base_name_in<'a>(store_dir: &str, path: &'a str) -> Option<&'a str> {
    let base = path.strip_prefix(store_dir)?.strip_prefix('/')?;
    split_base_name(base).map(|_| base)
}

/// How a NAR file is compressed, as named in a narinfo's `Compression:` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
}

impl Compression {
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "none" => Some(Compression::None),
            "xz" => Some(Compression::Xz),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// The name used in narinfos and in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// The file name suffix Nix gives a NAR compressed this way.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => ".nar",
            Compression::Xz => ".nar.xz",
            Compression::Zstd => ".nar.zst",
        }
    }
}

/// A NAR file name as Nix writes it: `<nixbase32 sha256 of the file>.nar[.xz|.zst]`.
///
/// The name carries the hash of the file's bytes, which lets an upload be checked against its
/// own name before anything else is known about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NarFileName {
    pub file_hash: [u8; 32],
    pub compression: Compression,
}

impl NarFileName {
    pub fn parse(file: &str) -> Option<NarFileName> {
        let hash_part = file.get(..SHA256_BASE32_LEN)?;
        let compression = [Compression::None, Compression::Xz, Compression::Zstd]
            .into_iter()
            .find(|c| &file[SHA256_BASE32_LEN..] == c.extension())?;
        if !is_nix_base32(hash_part) {
            return None;
        }
        let bytes = nix_base32::from_nix_base32(hash_part)?;
        Some(NarFileName {
            file_hash: bytes.try_into().ok()?,
            compression,
        })
    }

    pub fn new(file_hash: [u8; 32], compression: Compression) -> NarFileName {
        NarFileName {
            file_hash,
            compression,
        }
    }
}

impl fmt::Display for NarFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&nix_base32::to_nix_base32(&self.file_hash))?;
        f.write_str(self.compression.extension())
    }
}

/// Whether `name` may name a pin: a short identifier such as `prod-generation-42`.
pub fn is_valid_pin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0q43idch209zsdngl8yl79x0y79aajib";

    #[test]
    fn base32_alphabet() {
        let alphabet = "0123456789abcdfghijklmnpqrsvwxyz";
        for b in 0u8..=255 {
            let c = b as char;
            let s = c.to_string();
            assert_eq!(is_nix_base32(&s), alphabet.contains(c), "{c:?}");
        }
    }

    #[test]
    fn store_hashes() {
        assert!(StoreHash::parse(HASH).is_some());
        for bad in [
            "",
            "0q43idch209zsdngl8yl79x0y79aaji",   // 31 chars
            "0q43idch209zsdngl8yl79x0y79aajibb", // 33 chars
            "eq43idch209zsdngl8yl79x0y79aajib",  // 'e' is not in the alphabet
            "../../../../../../../etc/passwd.",
        ] {
            assert_eq!(StoreHash::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            StoreHash::from_narinfo_file(&format!("{HASH}.narinfo")).map(|h| h.0),
            Some(HASH.to_owned())
        );
        assert_eq!(StoreHash::from_narinfo_file(HASH), None);
        assert_eq!(StoreHash::from_narinfo_file(&format!("{HASH}.ls")), None);
    }

    #[test]
    fn base_names() {
        let ok = format!("{HASH}-nix-2.8.1");
        assert_eq!(
            split_base_name(&ok).map(|(h, n)| (h.0, n)),
            Some((HASH.to_owned(), "nix-2.8.1"))
        );
        for bad in [
            HASH.to_string(),
            format!("{HASH}-"),
            format!("{HASH}nix"),
            format!("{HASH}-.hidden"),
            format!("{HASH}-a/b"),
            format!("{HASH}-a b"),
            format!("{HASH}-{}", "x".repeat(212)),
        ] {
            assert_eq!(split_base_name(&bad), None, "{bad:?}");
        }
        assert_eq!(
            base_name_in("/nix/store", &format!("/nix/store/{ok}")),
            Some(ok.as_str())
        );
        assert_eq!(
            base_name_in("/nix/store", &format!("/nix/store/../{ok}")),
            None
        );
        assert_eq!(
            base_name_in("/nix/store", &format!("/nix/storex/{ok}")),
            None
        );
        assert_eq!(base_name_in("/nix/store", &format!("/other/{ok}")), None);
    }

    #[test]
    fn nar_file_names_round_trip() {
        let hash = "000y5y39fnxp2ijj8cmdgvmia6wwcrws1q6fbcr1fkf5rs2dm8lr";
        for (suffix, compression) in [
            (".nar", Compression::None),
            (".nar.xz", Compression::Xz),
            (".nar.zst", Compression::Zstd),
        ] {
            let file = format!("{hash}{suffix}");
            let parsed = NarFileName::parse(&file).expect("valid name");
            assert_eq!(parsed.compression, compression);
            assert_eq!(parsed.to_string(), file);
        }
        for bad in [
            format!("{hash}.nar.bz2"),
            hash.to_string(),
            format!("{hash}.nar/"),
            "../index.sqlite".to_owned(),
            format!("{}.nar", &hash[1..]),
            format!("e{}.nar", &hash[1..]),
        ] {
            assert_eq!(NarFileName::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pin_names() {
        assert!(is_valid_pin_name("prod-generation-42"));
        assert!(is_valid_pin_name("ci_main.7"));
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(!is_valid_pin_name(bad), "{bad:?}");
        }
    }
}
