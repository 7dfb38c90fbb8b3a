//! Prints the `AudioDetector` CRD manifest to stdout:
//! `cargo run -p auralguard-crds --bin crdgen > crds/audiodetector.yaml`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match auralguard_crds::crd_yaml() {
        Ok(yaml) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(yaml.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}
