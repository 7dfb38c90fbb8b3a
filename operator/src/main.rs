//! The `auralguard-operator` binary: parses flags, connects to the API server, serves its HTTP
//! endpoint, waits for the leader Lease, runs the controller until SIGTERM (or until leadership
//! is lost), then releases the Lease and exits.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auralguard_operator::builders::BuildConfig;
use auralguard_operator::clock::SystemClock;
use auralguard_operator::context::{Context, Settings};
use auralguard_operator::http::{self, Health};
use auralguard_operator::leader::{LeaderElector, LeaseConfig};
use auralguard_operator::metrics::Metrics;
use auralguard_operator::mlflow::{CachedResolver, MlflowResolver};
use auralguard_operator::scrape::PodScraper;
use auralguard_operator::{controller, leader};
use clap::{ArgAction, Parser, ValueEnum};
use tokio::sync::watch;
use tracing::{error, info, warn};

/// How long the controller may take to stop after SIGTERM (the chart's grace period is 30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs AudioDetector resources: deploys the AuralGuard detector and rolls out MLflow model
/// versions as canaries.
#[derive(Parser, Debug)]
#[command(name = "auralguard-operator", version, about)]
struct Cli {
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "AURALGUARD_OPERATOR_HTTP_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    http_addr: SocketAddr,

    /// Watch AudioDetectors in this namespace only (empty or unset: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,

    /// Elect one active replica through a coordination.k8s.io Lease (`--leader-election=false`
    /// to run without).
    #[arg(long, env = "AURALGUARD_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,

    /// Namespace of the Lease (default: the client's namespace, in-cluster the operator's own).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(
        long,
        env = "AURALGUARD_LEASE_NAME",
        default_value = "auralguard-operator"
    )]
    lease_name: String,

    /// This replica's identity in the Lease and in Events (default: $HOSTNAME).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,

    /// The detector image when a spec names none.
    #[arg(long, env = "AURALGUARD_DEFAULT_IMAGE", default_value = concat!("auralguard/auralguard:", env!("CARGO_PKG_VERSION")))]
    default_image: String,

    /// The detector image for GPU pods when a spec names none (default: the default image's tag
    /// with `-cuda` appended).
    #[arg(long, env = "AURALGUARD_DEFAULT_GPU_IMAGE")]
    default_gpu_image: Option<String>,

    /// How often MLflow aliases are re-resolved (and owned objects re-checked), e.g. 60s, 5m.
    #[arg(long, env = "AURALGUARD_MLFLOW_POLL_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    mlflow_poll_interval: Duration,

    /// How often a running rollout checks its pods while waiting for them.
    #[arg(long, env = "AURALGUARD_ROLLOUT_CHECK_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    rollout_check_interval: Duration,

    /// How long a canary pod may take to answer a /metrics scrape.
    #[arg(long, env = "AURALGUARD_SCRAPE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    scrape_timeout: Duration,

    /// Log format (default: json when stdout is not a terminal, text otherwise). The level
    /// comes from RUST_LOG (default info).
    #[arg(long, env = "AURALGUARD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Parses a Go-style duration (`90s`, `5m`, `1h30m`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: kube::core::Duration = s.parse().map_err(|e| format!("{e}"))?;
    if d.is_negative() {
        return Err("must not be negative".into());
    }
    Ok(d.into())
}

fn init_tracing(format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let namespace = cli.namespace.clone().filter(|n| !n.is_empty());
    info!(version = env!("CARGO_PKG_VERSION"), namespace = ?namespace, "starting auralguard-operator");

    let (stop_tx, stop_rx) = watch::channel(false);
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested");
        let _ = signal_tx.send(true);
    });

    auralguard_operator::install_tls_provider();
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or kubeconfig)")?;
    controller::check_crd(&client, namespace.as_deref()).await?;

    let metrics = Arc::new(Metrics::new()?);
    let health = Arc::new(Health {
        metrics: metrics.clone(),
        ready: false.into(),
    });
    let http_task = tokio::spawn(http::serve(cli.http_addr, health.clone(), stop_rx.clone()));
    info!(addr = %cli.http_addr, "serving /metrics, /healthz and /readyz");

    let identity = cli
        .pod_name
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("auralguard-operator-{}", std::process::id()));
    let clock = Arc::new(SystemClock);

    let mut build = BuildConfig::from_default_image(cli.default_image.clone());
    if let Some(gpu) = &cli.default_gpu_image {
        build.default_gpu_image = gpu.clone();
    }
    let settings = Settings {
        build,
        poll_interval: cli.mlflow_poll_interval,
        check_interval: cli.rollout_check_interval,
    };
    let resolver = Arc::new(CachedResolver::new(
        MlflowResolver::new(client.clone()),
        cli.mlflow_poll_interval / 2,
    ));
    let scraper = Arc::new(PodScraper::new(client.clone(), cli.scrape_timeout)?);
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        resolver,
        scraper,
        clock.clone(),
        metrics.clone(),
        Some(identity.clone()),
    ));

    // Leadership: without election this replica leads from the start.
    let (leader_tx, leader_rx) = watch::channel(!cli.leader_election);
    let elector = cli.leader_election.then(|| {
        let lease_ns = cli
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let cfg = LeaseConfig::new(cli.lease_name.clone(), lease_ns, identity.clone());
        cfg.validate()
            .map(|()| Arc::new(LeaderElector::new(client.clone(), cfg, clock)))
    });
    let elector = elector.transpose()?;
    let election_task = elector.clone().map(|e| {
        let stop = stop_rx.clone();
        tokio::spawn(async move { e.run(leader_tx, stop).await })
    });
    health.ready.store(true, Ordering::Relaxed);

    let mut waiting = leader_rx.clone();
    let mut stop = stop_rx.clone();
    let leading = tokio::select! {
        r = waiting.wait_for(|l| *l) => r.is_ok(),
        _ = stop.wait_for(|s| *s) => false,
    };

    let mut lost = false;
    if leading {
        info!(identity = %identity, "leading; starting the controller");
        metrics.leader.set(1);
        let mut stop = stop_rx.clone();
        let mut leadership = leader_rx.clone();
        let (lost_tx, mut lost_rx) = watch::channel(false);
        let shutdown = async move {
            let lost_leadership = async {
                let lost = leadership.wait_for(|l| !*l).await.is_ok();
                if !lost {
                    // No elector (leader election off): leadership never ends.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                () = lost_leadership => { let _ = lost_tx.send(true); }
            }
        };
        // Graceful shutdown waits for running reconciles; should it hang (say, on an API server
        // that stopped answering), exit anyway before the kubelet's SIGKILL.
        let mut stopping = stop_rx.clone();
        let mut losing = lost_rx.clone();
        let deadline = async move {
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => {}
                _ = losing.wait_for(|l| *l) => {}
            }
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            () = controller::run(ctx, namespace, shutdown) => {}
            () = deadline => warn!(grace = ?SHUTDOWN_GRACE, "the controller did not stop in time; exiting anyway"),
        }
        metrics.leader.set(0);
        lost = *lost_rx.borrow_and_update();
    }

    let _ = stop_tx.send(true);
    if let Some(task) = election_task {
        let _ = task.await;
    }
    if let Some(e) = &elector {
        if !lost {
            if let Err(err) = e.release().await {
                error!(error = %err, "cannot release the leader lease");
            }
        }
    }
    match http_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!(error = %e, "HTTP endpoint"),
        Err(e) => error!(error = %e, "HTTP endpoint task"),
    }
    if lost {
        return Err(leader::lost().into());
    }
    info!("stopped");
    Ok(())
}
