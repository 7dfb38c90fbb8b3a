//! The web page at `/` and the docs page at `/docs` in a real browser (headless Chromium driven
//! by Selenium through Debian's chromedriver), plus OpenAPI validation of `/openapi.json`. The
//! browser side lives in `tests/web/drive_page.py`; `scripts/install-web-test-deps.sh` installs
//! what it needs into `.venv/web`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::server::Server;

/// The venv's Python, or why the test cannot run.
fn web_python() -> Option<PathBuf> {
    let python = std::env::var_os("AURALGUARD_WEB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join(".venv/web/bin/python"));
    let has_driver = Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok();
    if python.exists() && has_driver {
        return Some(python);
    }
    common::skip(&format!(
        "no browser test kit (python at {}, chromedriver on PATH: {has_driver}); run \
         scripts/install-web-test-deps.sh or set AURALGUARD_WEB_PYTHON",
        python.display()
    ));
    None
}

#[test]
fn the_page_judges_an_upload_and_shows_spectrogram_timeline_and_history() {
    let Some(python) = web_python() else {
        return;
    };
    let server = Server::start(&[]);
    let clip = common::parity_dir().join("long_16k_pcm16.wav");
    let out = Command::new(python)
        .arg(common::repo_root().join("server/tests/web/drive_page.py"))
        .arg(&server.base)
        .arg(&clip)
        .arg("3")
        .output()
        .expect("run drive_page.py");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "browser checks failed:\n{report}");
}
