//! Leave-one-out evaluation protocols: the numbers that predict how a detector does on speakers
//! and generators it has never seen, which an in-domain test split cannot.
//!
//! A corpus whose test split shares speakers and generators with training rewards a model for
//! recognising *those* voices and *those* engines. The protocols here hold one group out of
//! training and validation entirely and test on it:
//!
//! * [`Protocol::Loso`], leave one **speaker** out: every clip carrying the speaker's voice (their
//!   recordings and any re-synthesis of them) leaves training; the test set is all of that
//!   speaker's clips plus the test split's other fakes. Its key figure is the false-alarm rate on
//!   the unseen person's genuine speech at the threshold the fold chose on its own validation set.
//! * [`Protocol::Logo`], leave one **generator** out (ASVspoof's "unseen attacks"): every clip of
//!   the generator leaves training; the test set is all of its clips plus the test split's real
//!   clips. Its key figure is the EER against an engine the model never heard.
//! * [`Protocol::Lofo`], leave one generator **family** out (neural TTS, diphone, formant,
//!   re-synthesis ...): the same with whole families, the hardest case — "would we catch a kind
//!   of synthesis we have no example of".
//!
//! This module only decides which clip goes where ([`folds`]); training and scoring belong to the
//! caller. Folds need a split column (train/val/test) so validation stays apart from the test.

use std::collections::BTreeSet;

use serde::Serialize;

use super::dataset::Clip;
use crate::error::{Error, Result};

/// Which group a fold holds out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Leave one real speaker out (the `speaker` column; a real clip's `source` without it).
    Loso,
    /// Leave one generator out (a fake clip's `source`).
    Logo,
    /// Leave one generator family out (a fake clip's `family` column).
    Lofo,
}

impl Protocol {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Loso => "loso",
            Protocol::Logo => "logo",
            Protocol::Lofo => "lofo",
        }
    }

    /// The group `clip` belongs to under this protocol, if any: the unit a fold holds out.
    pub fn group_of(self, clip: &Clip) -> Option<&str> {
        match self {
            Protocol::Loso => clip.speaker.as_deref(),
            Protocol::Logo => clip.fake.then_some(clip.source.as_str()),
            Protocol::Lofo => clip.family.as_deref().filter(|_| clip.fake),
        }
    }

    /// The groups a fold is made for: the speakers of real clips, or the generators (families)
    /// of fake clips, sorted.
    pub fn groups(self, clips: &[Clip]) -> Vec<String> {
        let wanted = |c: &Clip| match self {
            Protocol::Loso => !c.fake,
            Protocol::Logo | Protocol::Lofo => c.fake,
        };
        let set: BTreeSet<&str> = clips
            .iter()
            .filter(|c| wanted(c))
            .filter_map(|c| self.group_of(c))
            .collect();
        set.into_iter().map(str::to_string).collect()
    }
}

impl std::str::FromStr for Protocol {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "loso" => Ok(Protocol::Loso),
            "logo" => Ok(Protocol::Logo),
            "lofo" => Ok(Protocol::Lofo),
            other => Err(Error::InvalidArgument(format!(
                "unknown protocol '{other}' (expected loso, logo or lofo)"
            ))),
        }
    }
}

/// One fold: indices into the dataset's clips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold {
    /// The group held out (a speaker, a generator or a family).
    pub held_out: String,
    /// Training clips: the train split without the held-out group.
    pub train: Vec<usize>,
    /// Validation clips (early stopping, the fold's threshold): the val split without it.
    pub val: Vec<usize>,
    /// Test clips: every clip of the held-out group, plus the test split's clips of the other
    /// class that the group has none of (real clips for a generator, fakes for a speaker).
    pub test: Vec<usize>,
}

/// The folds of `protocol` over `clips`, one per group, in group order. `only` restricts them to
/// the named groups (an unknown name is an error, so a typo is not a silently empty report).
pub fn folds(clips: &[Clip], protocol: Protocol, only: &[String]) -> Result<Vec<Fold>> {
    if clips.iter().any(|c| c.split.is_empty()) {
        return Err(Error::InvalidArgument(
            "leave-one-out protocols need a split column (train/val/test) on every row".into(),
        ));
    }
    let groups = protocol.groups(clips);
    if groups.len() < 2 {
        let column = match protocol {
            Protocol::Loso => "speaker (or real clips' source)",
            Protocol::Logo => "source of fake clips",
            Protocol::Lofo => "family of fake clips",
        };
        return Err(Error::InvalidArgument(format!(
            "protocol {} needs at least two groups in the {column} column, found {groups:?}",
            protocol.name()
        )));
    }
    for name in only {
        if !groups.contains(name) {
            return Err(Error::InvalidArgument(format!(
                "'{name}' is not a {} group of this dataset (groups: {})",
                protocol.name(),
                groups.join(", ")
            )));
        }
    }
    let mut out = Vec::new();
    for group in groups
        .iter()
        .filter(|g| only.is_empty() || only.contains(g))
    {
        let held = |c: &Clip| protocol.group_of(c) == Some(group.as_str());
        let mut fold = Fold {
            held_out: group.clone(),
            train: Vec::new(),
            val: Vec::new(),
            test: Vec::new(),
        };
        for (i, c) in clips.iter().enumerate() {
            if held(c) {
                fold.test.push(i);
                continue;
            }
            match c.split.as_str() {
                "train" => fold.train.push(i),
                "val" => fold.val.push(i),
                _ => {
                    // The other class of the test split: what the held-out group is judged
                    // against. A speaker's fold tests fakes; a generator's fold tests reals.
                    let other_class = match protocol {
                        Protocol::Loso => c.fake,
                        Protocol::Logo | Protocol::Lofo => !c.fake,
                    };
                    if other_class {
                        fold.test.push(i);
                    }
                }
            }
        }
        out.push(fold);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn clip(name: &str, fake: bool, split: &str, source: &str, speaker: Option<&str>) -> Clip {
        Clip {
            path: PathBuf::from(name),
            filename: name.into(),
            fake,
            split: split.into(),
            source: source.into(),
            speaker: speaker.map(str::to_string),
            family: fake.then(|| {
                if source.starts_with("piper") {
                    "neural".to_string()
                } else {
                    "classic".to_string()
                }
            }),
        }
    }

    /// Two speakers (a, b), three generators; gl-* is a re-synthesis carrying a speaker's voice.
    fn corpus() -> Vec<Clip> {
        vec![
            clip("a1", false, "train", "rec", Some("a")),
            clip("a2", false, "val", "rec", Some("a")),
            clip("a3", false, "test", "rec", Some("a")),
            clip("b1", false, "train", "rec", Some("b")),
            clip("b2", false, "val", "rec", Some("b")),
            clip("b3", false, "test", "rec", Some("b")),
            clip("gl-a1", true, "train", "griffin-lim", Some("a")),
            clip("gl-b3", true, "test", "griffin-lim", Some("b")),
            clip("esp1", true, "train", "espeak", None),
            clip("esp2", true, "val", "espeak", None),
            clip("esp3", true, "test", "espeak", None),
            clip("pip1", true, "train", "piper-x", None),
            clip("pip2", true, "val", "piper-x", None),
            clip("pip3", true, "test", "piper-x", None),
        ]
    }

    fn names(c: &[Clip], idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| c[i].filename.clone()).collect()
    }

    #[test]
    fn a_held_out_speaker_leaves_training_with_every_clip_of_their_voice() {
        let c = corpus();
        let f = folds(&c, Protocol::Loso, &[]).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].held_out, "a");
        assert_eq!(names(&c, &f[0].train), ["b1", "esp1", "pip1"]);
        assert_eq!(names(&c, &f[0].val), ["b2", "esp2", "pip2"]);
        // All of a's clips (any split), and the test split's other fakes; b3 (real) is not a's.
        assert_eq!(
            names(&c, &f[0].test),
            ["a1", "a2", "a3", "gl-a1", "gl-b3", "esp3", "pip3"]
        );
        for fold in &f {
            for &i in fold.train.iter().chain(&fold.val) {
                assert_ne!(c[i].speaker.as_deref(), Some(fold.held_out.as_str()));
            }
        }
    }

    #[test]
    fn a_held_out_generator_is_tested_against_the_test_splits_real_clips_only() {
        let c = corpus();
        let f = folds(&c, Protocol::Logo, &["piper-x".into()]).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(
            names(&c, &f[0].train),
            ["a1", "b1", "gl-a1", "esp1"],
            "no piper clip trains"
        );
        assert_eq!(names(&c, &f[0].val), ["a2", "b2", "esp2"]);
        assert_eq!(names(&c, &f[0].test), ["a3", "b3", "pip1", "pip2", "pip3"]);
    }

    #[test]
    fn families_hold_out_every_generator_of_a_kind() {
        let c = corpus();
        let f = folds(&c, Protocol::Lofo, &[]).unwrap();
        let groups: Vec<&str> = f.iter().map(|f| f.held_out.as_str()).collect();
        assert_eq!(groups, ["classic", "neural"]);
        assert_eq!(
            names(&c, &f[0].test),
            ["a3", "b3", "gl-a1", "gl-b3", "esp1", "esp2", "esp3"]
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let c = corpus();
        let e = folds(&c, Protocol::Logo, &["nope".into()]).unwrap_err();
        assert!(
            e.to_string()
                .contains("groups: espeak, griffin-lim, piper-x"),
            "{e}"
        );
        let mut no_split = corpus();
        no_split[0].split.clear();
        assert!(folds(&no_split, Protocol::Logo, &[]).is_err());
        let one_speaker: Vec<Clip> = corpus()
            .into_iter()
            .filter(|c| c.speaker.as_deref() != Some("b"))
            .collect();
        let e = folds(&one_speaker, Protocol::Loso, &[]).unwrap_err();
        assert!(e.to_string().contains("at least two groups"), "{e}");
    }

    #[test]
    fn protocol_names_parse_case_insensitively() {
        assert_eq!("LOSO".parse::<Protocol>().unwrap(), Protocol::Loso);
        assert!("kfold".parse::<Protocol>().is_err());
    }
}
