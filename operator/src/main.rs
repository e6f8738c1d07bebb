//! The `dolphin-operator` command: `crd` prints the CRD, `run` runs the operator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use clap::{Args, Parser, Subcommand, ValueEnum};
use dolphin_operator::controller::{self, Context};
use dolphin_operator::election::Election;
use dolphin_operator::metrics::Metrics;
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

/// Where metrics and health are served by default: every interface, so that Prometheus and
/// the kubelet reach the pod.
const DEFAULT_METRICS_LISTEN: &str = "0.0.0.0:8080";

/// The Lease every replica of the operator competes for.
const DEFAULT_LEASE_NAME: &str = "dolphin-operator";

/// How long a Lease outlives its holder's last renewal: the failover time when a holder dies
/// without releasing it (a clean shutdown releases it at once).
const DEFAULT_LEASE_SECONDS: u64 = 15;

/// Reconciles ImCluster resources into running Dolphin clusters.
#[derive(Debug, Parser)]
#[command(name = "dolphin-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the ImCluster CustomResourceDefinition as YAML.
    Crd,
    /// Runs the operator against the cluster of the kubeconfig or of the pod it runs in.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Address of the HTTP server for /metrics and /healthz.
    #[arg(long, env = "DOLPHIN_OPERATOR_METRICS_LISTEN", default_value = DEFAULT_METRICS_LISTEN)]
    metrics_listen: SocketAddr,

    /// Log format; the levels come from RUST_LOG (default info).
    #[arg(long, env = "DOLPHIN_OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Compete for a Lease so that only one of several replicas reconciles.
    #[arg(long, env = "DOLPHIN_OPERATOR_LEADER_ELECTION")]
    leader_election: bool,

    /// Namespace of the Lease; defaults to the namespace of the kubeconfig or of the pod.
    #[arg(long, env = "DOLPHIN_OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(long, env = "DOLPHIN_OPERATOR_LEASE_NAME", default_value = DEFAULT_LEASE_NAME)]
    lease_name: String,

    /// Seconds a Lease stays valid after its holder's last renewal (at least 3).
    #[arg(long, env = "DOLPHIN_OPERATOR_LEASE_SECONDS", default_value_t = DEFAULT_LEASE_SECONDS)]
    lease_seconds: u64,

    /// This replica's name in the Lease; defaults to POD_NAME, else the host name and pid.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

impl RunArgs {
    /// Every problem with the arguments, all at once.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.lease_seconds < 3 {
            problems.push(format!("--lease-seconds is {}, must be at least 3", self.lease_seconds));
        }
        if self.lease_name.is_empty() {
            problems.push("--lease-name must not be empty".to_owned());
        }
        if self.identity.as_deref() == Some("") {
            problems.push("--identity must not be empty".to_owned());
        }
        problems
    }

    fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "operator".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            let yaml = dolphin_operator::crd_yaml()?;
            #[allow(clippy::print_stdout, reason = "the YAML is this command's output")]
            {
                print!("{yaml}");
            }
            Ok(())
        }
        Command::Run(args) => {
            let problems = args.problems();
            if !problems.is_empty() {
                anyhow::bail!("invalid arguments:\n  {}", problems.join("\n  "));
            }
            init_logs(args.log_format);
            let runtime = tokio::runtime::Runtime::new().context("failed to start the runtime")?;
            runtime.block_on(run(args))
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr, coloured only on a terminal; stdout is for a command's output.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Metrics::new().context("failed to register the metrics")?;
    let listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("failed to listen on {} for metrics", args.metrics_listen))?;
    let client =
        Client::try_default().await.context("failed to configure the Kubernetes client")?;

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let server = tokio::spawn(serve_metrics(listener, metrics.clone(), shutdown.clone()));
    info!(metrics = %args.metrics_listen, "serving metrics and health");

    let mut election = None;
    if args.leader_election {
        let namespace =
            args.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
        let duration = Duration::from_secs(args.lease_seconds);
        let mut lease =
            Election::new(client.clone(), &namespace, &args.lease_name, &args.identity(), duration);
        tokio::select! {
            acquired = lease.acquire() => acquired.context("failed to take part in the election")?,
            () = shutdown.cancelled() => {
                server.await.context("the metrics server failed")?;
                return Ok(());
            }
        }
        election = Some(lease);
    }

    let monitoring = controller::monitoring_available(&client).await;
    info!(pod_monitors = monitoring, "starting the controller");
    let ctx = Arc::new(Context::new(client, metrics, monitoring)?);
    let controller = tokio::spawn(controller::run(ctx, shutdown.clone().cancelled_owned()));

    // The holder keeps renewing while the controller runs; losing the Lease stops the
    // controller, since another replica may be reconciling already.
    let mut lost = None;
    if let Some(lease) = election.as_mut() {
        tokio::select! {
            why = lease.hold() => {
                error!(error = %why, "stopping: another replica may lead now");
                lost = Some(why);
                shutdown.cancel();
            }
            () = shutdown.cancelled() => {}
        }
    }
    controller.await.context("the controller failed")?;
    if let (Some(lease), None) = (election.as_mut(), &lost) {
        lease.release().await;
    }
    shutdown.cancel();
    server.await.context("the metrics server failed")?;
    info!("stopped");
    match lost {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            error!(error = %error, "failed to listen for SIGTERM; only SIGINT stops the operator");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("stopping on a signal");
    shutdown.cancel();
}

async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(metrics);
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
    if let Err(error) = served.await {
        error!(error = %error, "the metrics server failed");
    }
}

async fn metrics_text(State(metrics): State<Metrics>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let mut argv = vec!["dolphin-operator", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("the arguments parse").command {
            Command::Run(args) => args,
            Command::Crd => panic!("parsed as crd"),
        }
    }

    #[test]
    fn default_arguments_have_no_problem() {
        assert!(run_args(&[]).problems().is_empty());
    }

    #[test]
    fn every_bad_argument_is_reported_at_once() {
        let problems =
            run_args(&["--lease-seconds", "2", "--lease-name", "", "--identity", ""]).problems();
        assert_eq!(
            problems,
            [
                "--lease-seconds is 2, must be at least 3",
                "--lease-name must not be empty",
                "--identity must not be empty",
            ]
        );
    }

    #[test]
    fn a_metrics_address_that_is_no_socket_address_does_not_parse() {
        let parsed = Cli::try_parse_from(["dolphin-operator", "run", "--metrics-listen", ":80"]);
        let error = parsed.expect_err("':80' has no host").to_string();
        assert!(error.contains("--metrics-listen"), "{error}");
    }
}
