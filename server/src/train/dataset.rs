//! Labelled datasets: the original service's CSV (`filename,label`) plus optional columns.
//!
//! Recognised columns (by header name, any order, extra columns ignored): `filename` (relative to
//! the CSV's folder, or absolute), `label` (`real`/`fake`, also `bonafide`/`spoof` and `0`/`1`),
//! `split` (`train`/`val`/`test`; without it the trainer makes a seeded 85/15 train/val split of
//! the rows), `source` (what produced the clip: the generator of a fake, the corpus of a real
//! clip), `speaker` (whose voice a clip carries: the person of a recording or of a re-synthesis;
//! leave-one-speaker-out holds it out) and `family` (the kind of generator, e.g. `neural-tts`;
//! leave-one-family-out holds it out). Fields may be quoted the CSV way. Every problem is reported with its line number, before any audio is read.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One labelled clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// Absolute or CSV-relative path resolved against the CSV's folder.
    pub path: PathBuf,
    /// The `filename` field as written (stable across machines, used in hashes and reports).
    pub filename: String,
    /// True for synthetic speech (the positive class).
    pub fake: bool,
    /// `train`, `val`, `test`, or empty when the CSV has no split column.
    pub split: String,
    /// What produced the clip (`source` column), or the label when absent.
    pub source: String,
    /// Whose voice the clip carries (`speaker` column); without the column, a real clip's
    /// `source` (the demo corpus has one speaker per real source), a fake's nothing.
    pub speaker: Option<String>,
    /// The kind of generator of a fake clip (`family` column), when given.
    pub family: Option<String>,
}

/// A dataset read from one CSV.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The CSV file.
    pub csv: PathBuf,
    /// Rows in file order.
    pub clips: Vec<Clip>,
    /// Whether the CSV had a `split` column.
    pub has_split: bool,
}

impl Dataset {
    /// Reads and checks `csv`.
    pub fn load(csv: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(csv).map_err(|e| Error::io(csv, e))?;
        Self::parse(&text, csv)
    }

    /// Parses CSV text whose relative paths are relative to `csv`'s folder.
    pub fn parse(text: &str, csv: &Path) -> Result<Self> {
        let base = csv.parent().unwrap_or(Path::new(""));
        let bad = |line: usize, why: String| {
            Error::InvalidArgument(format!("{}:{line}: {why}", csv.display()))
        };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| {
            bad(
                1,
                "the file is empty (expected a header filename,label)".into(),
            )
        })?;
        // Spreadsheets save UTF-8 CSV with a byte-order mark; it is not part of the first name.
        let header = header.strip_prefix('\u{feff}').unwrap_or(header);
        let header = split_fields(header).map_err(|e| bad(1, e))?;
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let (Some(fi), Some(li)) = (col("filename"), col("label")) else {
            return Err(bad(
                1,
                format!("the header must name 'filename' and 'label' columns, got {header:?}"),
            ));
        };
        let (si, so) = (col("split"), col("source"));
        let (sp, fa) = (col("speaker"), col("family"));
        let mut clips = Vec::new();
        for (n, line) in lines {
            let line_no = n + 1;
            let fields = split_fields(line).map_err(|e| bad(line_no, e))?;
            let get = |i: usize| fields.get(i).map(|s| s.trim()).unwrap_or("");
            let filename = get(fi);
            if filename.is_empty() {
                return Err(bad(line_no, "empty filename".into()));
            }
            let fake = parse_label(get(li)).ok_or_else(|| {
                bad(
                    line_no,
                    format!(
                        "label '{}' is not real/fake (or bonafide/spoof, 0/1)",
                        get(li)
                    ),
                )
            })?;
            let split = si.map(|i| get(i).to_ascii_lowercase()).unwrap_or_default();
            if si.is_some() && !matches!(split.as_str(), "train" | "val" | "test") {
                return Err(bad(
                    line_no,
                    format!("split '{split}' is not train, val or test"),
                ));
            }
            let source = so
                .map(|i| get(i).to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| if fake { "fake" } else { "real" }.to_string());
            let optional =
                |i: Option<usize>| i.map(|i| get(i).to_string()).filter(|s| !s.is_empty());
            let speaker = match sp {
                Some(i) => optional(Some(i)),
                None => (!fake).then(|| source.clone()),
            };
            let family = optional(fa);
            let p = Path::new(filename);
            clips.push(Clip {
                path: if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base.join(p)
                },
                filename: filename.to_string(),
                fake,
                split,
                source,
                speaker,
                family,
            });
        }
        if clips.is_empty() {
            return Err(bad(1, "no rows after the header".into()));
        }
        Ok(Self {
            csv: csv.to_path_buf(),
            clips,
            has_split: si.is_some(),
        })
    }

    /// The clips of one split (all clips when `split` is `None`).
    pub fn split(&self, split: Option<&str>) -> Vec<&Clip> {
        self.clips
            .iter()
            .filter(|c| split.is_none_or(|s| c.split == s))
            .collect()
    }

    /// Counts of (real, fake) clips.
    pub fn label_counts(clips: &[&Clip]) -> (usize, usize) {
        let fake = clips.iter().filter(|c| c.fake).count();
        (clips.len() - fake, fake)
    }
}

/// `real`/`bonafide`/`0` → false, `fake`/`spoof`/`1` → true.
pub fn parse_label(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "real" | "bonafide" | "bona-fide" | "0" => Some(false),
        "fake" | "spoof" | "1" => Some(true),
        _ => None,
    }
}

/// Splits one CSV record: commas separate, double quotes group, `""` is a literal quote.
fn split_fields(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_original_format_and_the_extended_one() {
        let d = Dataset::parse(
            "filename,label\na.wav,real\nsub/b.wav,fake\n",
            Path::new("/d/x.csv"),
        )
        .unwrap();
        assert!(!d.has_split);
        assert_eq!(d.clips[1].path, Path::new("/d/sub/b.wav"));
        assert!(d.clips[1].fake && !d.clips[0].fake);
        assert_eq!(d.clips[0].source, "real");

        let d = Dataset::parse(
            "split,label,filename,source\ntest,spoof,\"c, d.wav\",flite\r\n",
            Path::new("x.csv"),
        )
        .unwrap();
        assert_eq!(d.clips[0].filename, "c, d.wav");
        assert_eq!(d.clips[0].split, "test");
        assert_eq!(d.clips[0].source, "flite");
        assert_eq!(d.split(Some("test")).len(), 1);
        assert_eq!(d.split(Some("train")).len(), 0);

        // As a spreadsheet saves it: byte-order mark and CRLF.
        let d = Dataset::parse(
            "\u{feff}filename,label\r\na.wav,fake\r\n",
            Path::new("x.csv"),
        )
        .unwrap();
        assert_eq!(d.clips[0].filename, "a.wav");
        assert!(d.clips[0].fake);
    }

    #[test]
    fn speaker_and_family_default_sensibly() {
        let csv = "filename,label,source,speaker,family\n\
                   a.wav,real,asterisk-en,allison,\n\
                   b.wav,fake,griffin-lim,allison,resynthesis\n\
                   c.wav,fake,piper,,neural-tts\n";
        let d = Dataset::parse(csv, Path::new("x.csv")).unwrap();
        assert_eq!(d.clips[0].speaker.as_deref(), Some("allison"));
        assert_eq!(d.clips[0].family, None);
        assert_eq!(d.clips[1].speaker.as_deref(), Some("allison"));
        assert_eq!(d.clips[2].speaker, None);
        assert_eq!(d.clips[2].family.as_deref(), Some("neural-tts"));
        // Without a speaker column a real clip's source names its speaker; a fake has none.
        let d = Dataset::parse(
            "filename,label,source\na.wav,real,asterisk-en\nb.wav,fake,flite\n",
            Path::new("x.csv"),
        )
        .unwrap();
        assert_eq!(d.clips[0].speaker.as_deref(), Some("asterisk-en"));
        assert_eq!(d.clips[1].speaker, None);
    }

    #[test]
    fn problems_name_the_line() {
        let e = Dataset::parse("filename,label\na.wav,maybe\n", Path::new("x.csv")).unwrap_err();
        assert!(
            e.to_string().contains("x.csv:2") && e.to_string().contains("maybe"),
            "{e}"
        );
        let e = Dataset::parse("file,label\n", Path::new("x.csv")).unwrap_err();
        assert!(e.to_string().contains("filename"), "{e}");
        let e =
            Dataset::parse("filename,label,split\na,real,dev\n", Path::new("x.csv")).unwrap_err();
        assert!(e.to_string().contains("dev"), "{e}");
        assert!(Dataset::parse("filename,label\n", Path::new("x.csv")).is_err());
        assert!(Dataset::parse("filename,label\n\"a,real\n", Path::new("x.csv")).is_err());
    }
}
