//! The manifest of Redis 7.0's multi-part AOF: one `file <name> seq <n> type <b|h|i>` line per
//! file, the base first, then history files, then the incrementals in order (as aof.c's
//! `getAofManifestAsString` writes it and `aofLoadManifestFromFile` reads it).

use std::io::Write as _;
use std::path::Path;

/// A file's role in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileType {
    /// `b`: the base, an RDB (or commands when `aof-use-rdb-preamble no`).
    Base,
    /// `h`: a file a rewrite replaced, waiting to be deleted.
    History,
    /// `i`: an incremental file of commands.
    Incr,
}

impl FileType {
    fn letter(self) -> char {
        match self {
            FileType::Base => 'b',
            FileType::History => 'h',
            FileType::Incr => 'i',
        }
    }
}

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) seq: u64,
    pub(crate) kind: FileType,
}

/// The manifest: at most one base, the history files, the incrementals in replay order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) base: Option<Entry>,
    pub(crate) history: Vec<Entry>,
    pub(crate) incrs: Vec<Entry>,
}

/// Redis refuses manifest lines longer than this (`AOF_MANIFEST_LINE_MAX`... its buffer).
const MAX_LINE: usize = 1024;

impl Manifest {
    /// Parses the manifest's text. Err is the reason, as Redis words it.
    pub(crate) fn parse(text: &[u8]) -> Result<Manifest, String> {
        let mut manifest = Manifest::default();
        // As Redis's aofLoadManifestFromFile: no line at all is an empty manifest, a blank line
        // is invalid (comments are skipped), and the text after the last newline is no line.
        if text.is_empty() {
            return Err("Found an empty AOF manifest".into());
        }
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        for line in text.split(|&b| b == b'\n') {
            if line.len() > MAX_LINE {
                return Err("The AOF manifest file contains too long line".into());
            }
            if line.first() == Some(&b'#') {
                continue;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                return Err("Invalid AOF manifest file format".into());
            }
            let words = split_args(line).ok_or("Invalid AOF manifest file format")?;
            // `argc < 6` is Redis's test too (forward compatible: more pairs may follow).
            if words.len() < 6 || words.len() % 2 != 0 {
                return Err("Invalid AOF manifest file format".into());
            }
            let (mut name, mut seq, mut kind) = (None, None, None);
            for pair in words.chunks_exact(2) {
                let [key, value] = pair else { continue };
                if key.eq_ignore_ascii_case(b"file") {
                    name = String::from_utf8(value.clone()).ok();
                } else if key.eq_ignore_ascii_case(b"seq") {
                    seq = std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .filter(|&seq| seq != 0);
                } else if key.eq_ignore_ascii_case(b"type") {
                    // Redis reads the first character.
                    kind = value.first().copied();
                }
                // Unknown keys are skipped, as Redis does, for forward compatibility.
            }
            let (Some(name), Some(seq), Some(kind)) = (name, seq, kind) else {
                return Err("Invalid AOF manifest file format".into());
            };
            let kind = match kind {
                b'b' => FileType::Base,
                b'h' => FileType::History,
                b'i' => FileType::Incr,
                _ => return Err("Unknown AOF file type".into()),
            };
            if name.contains('/') || name.is_empty() {
                return Err(format!("Invalid AOF file name in the manifest: {name:?}"));
            }
            let entry = Entry { name, seq, kind };
            match kind {
                FileType::Base => {
                    if manifest.base.is_some() {
                        return Err("Found duplicate base file information".into());
                    }
                    manifest.base = Some(entry);
                }
                FileType::History => manifest.history.push(entry),
                FileType::Incr => {
                    if manifest.incrs.last().is_some_and(|last| last.seq >= seq) {
                        return Err("Found a non-monotonic sequence number".into());
                    }
                    manifest.incrs.push(entry);
                }
            }
        }
        Ok(manifest)
    }

    /// The manifest's text, as Redis writes it.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        let entries = self.base.iter().chain(&self.history).chain(&self.incrs);
        for entry in entries {
            text.push_str("file ");
            text.push_str(&quote(&entry.name));
            text.push_str(&format!(
                " seq {} type {}\n",
                entry.seq,
                entry.kind.letter()
            ));
        }
        text
    }

    /// Replaces `dir/name` with this manifest atomically: a temp file, fsync, rename, then the
    /// directory's fsync so the rename itself survives a crash.
    pub(crate) fn persist(&self, dir: &Path, name: &str) -> std::io::Result<()> {
        let temp = dir.join(format!("temp-{name}"));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(self.render().as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, dir.join(name))?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// A name as Redis's `sdscatrepr` writes it when it has characters `sdssplitargs` would split
/// on; plain otherwise.
fn quote(name: &str) -> String {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\'' && b != b'\\');
    if plain {
        return name.to_owned();
    }
    let mut out = String::from("\"");
    for b in name.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b if b.is_ascii_graphic() || b == b' ' => out.push(char::from(b)),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// Splits a line into words as `sdssplitargs` does (whitespace, double quotes with escapes,
/// single quotes). None for unbalanced quotes.
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while line.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let Some(&first) = line.get(i) else { break };
        let mut word = Vec::new();
        match first {
            b'"' => {
                i += 1;
                loop {
                    match *line.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            let escaped = *line.get(i + 1)?;
                            i += 1;
                            match escaped {
                                b'n' => word.push(b'\n'),
                                b'r' => word.push(b'\r'),
                                b't' => word.push(b'\t'),
                                b'x' => {
                                    let hex = line.get(i + 1..i + 3)?;
                                    let hex = std::str::from_utf8(hex).ok()?;
                                    word.push(u8::from_str_radix(hex, 16).ok()?);
                                    i += 2;
                                }
                                other => word.push(other),
                            }
                        }
                        b => word.push(b),
                    }
                    i += 1;
                }
                i += 1;
            }
            b'\'' => {
                i += 1;
                loop {
                    match *line.get(i)? {
                        b'\'' => break,
                        b => word.push(b),
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => {
                while let Some(&b) = line.get(i) {
                    if b.is_ascii_whitespace() {
                        break;
                    }
                    word.push(b);
                    i += 1;
                }
            }
        }
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_redis_format() {
        let text = "file appendonly.aof.1.base.rdb seq 1 type b\n\
                    file appendonly.aof.1.incr.aof seq 1 type i\n\
                    file appendonly.aof.2.incr.aof seq 2 type i\n";
        let manifest = Manifest::parse(text.as_bytes()).expect("parses");
        assert_eq!(
            manifest.base.as_ref().map(|b| b.name.as_str()),
            Some("appendonly.aof.1.base.rdb")
        );
        assert_eq!(manifest.incrs.len(), 2);
        assert_eq!(manifest.render(), text);
    }

    #[test]
    fn quoted_names_round_trip() {
        let manifest = Manifest {
            base: Some(Entry {
                name: "my file.1.base.rdb".into(),
                seq: 1,
                kind: FileType::Base,
            }),
            ..Manifest::default()
        };
        let text = manifest.render();
        assert_eq!(text, "file \"my file.1.base.rdb\" seq 1 type b\n");
        assert_eq!(Manifest::parse(text.as_bytes()), Ok(manifest));
    }

    #[test]
    fn bad_manifests_are_refused() {
        for bad in [
            "file a seq 1\n",
            "file a seq x type i\n",
            "file \"a seq 1 type i\n",
            "file a seq 1 type b\nfile b seq 2 type b\n",
            "file a seq 2 type i\nfile b seq 1 type i\n",
            "file ../x seq 1 type i\n",
            "file a seq 0 type i\n",
        ] {
            assert!(Manifest::parse(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
        // Redis's errors for these (aofLoadManifestFromFile).
        for (bad, error) in [
            ("", "Found an empty AOF manifest"),
            (
                "file a seq 1 type b\n\nfile b seq 1 type i\n",
                "Invalid AOF manifest file format",
            ),
            ("file a seq 1 type x\n", "Unknown AOF file type"),
        ] {
            assert_eq!(
                Manifest::parse(bad.as_bytes()),
                Err(error.to_owned()),
                "{bad:?}"
            );
        }
        let ok = Manifest::parse(b"# comment\nFILE a SEQ 1 TYPE h\n").expect("parses");
        assert_eq!(ok.history.len(), 1);
    }
}
