//! `sluice-bench`: Sluice against RabbitMQ and NATS JetStream, side by side
//! in one run on one machine, printed as one table.
//!
//! Sluice runs twice: with its default durability (`--durability fsync`:
//! acknowledged means fsynced, with group commit) to compare with RabbitMQ,
//! which fsyncs before it confirms; and relaxed (`--durability interval:MS`)
//! to compare with JetStream, which acknowledges from the page cache.
//!
//! Repetitions interleave the systems (each repetition runs every system in
//! a rotated order), so a noisy neighbour on a shared machine hurts them
//! alike; the table reports medians. This is a command that prints numbers,
//! never a test that asserts on them.

mod cpu;
mod http;
mod nats;
mod rabbit;
mod servers;
mod sluice;
mod stats;
mod window;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use crate::servers::{NatsServer, RabbitServer, SluiceServer};
use crate::sluice::SluiceClient;
use crate::stats::{Pace, Results, Sample, Scenario, System};
use crate::window::Schedule;

/// Benchmark Sluice against RabbitMQ and NATS JetStream (1 KiB messages).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A release build of the `sluice` binary.
    #[arg(long)]
    sluice: PathBuf,
    /// The handler component for the Wasm scenarios (completes every message).
    #[arg(long)]
    component: PathBuf,
    /// The batch handler component for the batch scenarios
    /// (tests/guests/batch: reports each batch to `batch-sizes`, completes it).
    #[arg(long)]
    batch_component: PathBuf,
    /// Messages per throughput scenario.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Repetitions of every scenario; the table shows medians.
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// Steady rate of the latency scenario (messages per second).
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Seconds of the latency scenario that are measured (after the warm-up).
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// Seconds of warm-up before latencies are recorded.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// HTTP requests in flight when sending to Sluice; also the handler's maxConcurrency.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Concurrent batch receives (up to 100 messages each) against Sluice.
    #[arg(long, default_value_t = 4)]
    receivers: usize,
    /// Completions (`DELETE`s) in flight against Sluice.
    #[arg(long, default_value_t = 64)]
    settlers: usize,
    /// Unconfirmed publishes in flight for RabbitMQ and JetStream.
    #[arg(long, default_value_t = 1_000)]
    window: usize,
    /// Flush interval of the relaxed Sluice (`--durability interval:MS`).
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// `SLUICE_LOG` for the Sluice hosts (default: the host's own default level).
    #[arg(long)]
    sluice_log: Option<String>,
    /// Systems to run, comma-separated: sluice, sluice-relaxed, rabbitmq, jetstream.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sluice,sluice-relaxed,rabbitmq,jetstream"
    )]
    systems: Vec<String>,
    /// Scenarios to run, comma-separated (default: all). One that works on
    /// another's queue runs only with it: receive-complete after send,
    /// wasm-drain after send-batch.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Where servers keep their data and logs (cleared first).
    #[arg(long, default_value = "target/bench/run")]
    work_dir: PathBuf,
    /// The RabbitMQ start script (the Debian package's, not the /usr/sbin wrapper).
    #[arg(long, default_value = "/usr/lib/rabbitmq/bin/rabbitmq-server")]
    rabbitmq_server: PathBuf,
    /// Erlang's port mapper daemon.
    #[arg(long, default_value = "/usr/bin/epmd")]
    epmd: PathBuf,
    /// The NATS server binary.
    #[arg(long, default_value = "/usr/sbin/nats-server")]
    nats_server: PathBuf,
}

/// Knobs every driver reads.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) concurrency: usize,
    pub(crate) receivers: usize,
    pub(crate) settlers: usize,
    pub(crate) window: usize,
    /// The latency scenario's rate (for labels).
    pub(crate) rate: u32,
    /// Upper bound on any one wait in a scenario.
    pub(crate) limit: Duration,
    /// The scenarios to run; empty: all.
    pub(crate) scenarios: Vec<Scenario>,
}

/// The servers of this run; dropping it stops them all.
#[derive(Default)]
struct Servers {
    sluice: Option<(SluiceServer, SluiceClient)>,
    relaxed: Option<(SluiceServer, SluiceClient)>,
    rabbit: Option<(RabbitServer, rabbit::Rabbit)>,
    nats: Option<(NatsServer, nats::JetStream)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut results = Results::default();
    let mut servers = Servers::default();
    let started = Instant::now();
    // Ctrl-C or SIGTERM stop the run; the servers are stopped on the way out
    // because `servers` lives outside the cancelled future.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    let outcome = tokio::select! {
        outcome = run(&args, &mut servers, &mut results) => Some(outcome),
        _ = tokio::signal::ctrl_c() => None,
        _ = terminate.recv() => None,
    };
    let stop = Instant::now();
    drop(servers);
    eprintln!("servers stopped in {:.1} s", stop.elapsed().as_secs_f64());
    let Some(outcome) = outcome else {
        eprintln!("interrupted: no table");
        std::process::exit(130);
    };
    outcome?;
    println!("{}", results.render(args.rate, args.repetitions));
    println!(
        "{} messages of {} bytes per throughput scenario, {} repetitions, latency at {} msg/s for {} s after {} s warm-up; wall time {:.0} s",
        args.messages,
        stats::BODY_BYTES,
        args.repetitions,
        args.rate,
        args.latency_secs,
        args.warmup_secs,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run(args: &Args, servers: &mut Servers, results: &mut Results) -> anyhow::Result<()> {
    let work = std::path::absolute(&args.work_dir).context("resolving the work directory")?;
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let _ = std::fs::remove_file(work.join("pids"));
    let component = std::fs::read(&args.component)
        .with_context(|| format!("reading the component {}", args.component.display()))?;
    let batch_component = std::fs::read(&args.batch_component).with_context(|| {
        format!(
            "reading the batch component {}",
            args.batch_component.display()
        )
    })?;
    let handlers = Handlers {
        single: &component,
        batch: &batch_component,
    };
    let wanted = |name: &str| args.systems.iter().any(|s| s == name);
    let settings = Settings {
        concurrency: args.concurrency,
        receivers: args.receivers,
        settlers: args.settlers,
        window: args.window,
        rate: args.rate,
        limit: Duration::from_secs(120 + (args.messages / 100) as u64),
        scenarios: args.scenarios.clone(),
    };
    let pace = Pace {
        rate: args.rate,
        warmup: Duration::from_secs(args.warmup_secs),
        measure: Duration::from_secs(args.latency_secs),
    };

    // Start everything up front: a system that does not start is reported
    // as failed and the others still run.
    let mut unavailable: Vec<(System, anyhow::Error)> = Vec::new();
    for (name, system) in [
        ("sluice", System::Sluice),
        ("sluice-relaxed", System::SluiceRelaxed),
    ] {
        if !wanted(name) {
            continue;
        }
        match start_sluice(args, system, &work.join(name), &work).await {
            Ok(s) if system == System::SluiceRelaxed => servers.relaxed = Some(s),
            Ok(s) => servers.sluice = Some(s),
            Err(e) => unavailable.push((system, e)),
        }
    }
    if wanted("rabbitmq") {
        eprintln!("starting RabbitMQ");
        let started = async {
            let server = RabbitServer::start(
                &args.rabbitmq_server,
                &args.epmd,
                &work.join("rabbitmq"),
                &work,
            )
            .await?;
            let client = rabbit::Rabbit::connect(&server.url).await?;
            anyhow::Ok((server, client))
        }
        .await;
        match started {
            Ok(s) => servers.rabbit = Some(s),
            Err(e) => unavailable.push((System::RabbitMq, e)),
        }
    }
    if wanted("jetstream") {
        eprintln!("starting nats-server -js");
        let started = async {
            let server = NatsServer::start(&args.nats_server, &work.join("nats"), &work).await?;
            let client = nats::JetStream::connect(&server.url).await?;
            anyhow::Ok((server, client))
        }
        .await;
        match started {
            Ok(s) => servers.nats = Some(s),
            Err(e) => unavailable.push((System::JetStream, e)),
        }
    }
    for (system, error) in &unavailable {
        eprintln!("{} did not start: {error:#}", system.label());
        results.fail(*system, Scenario::Send, 0, error);
    }

    let mut order = vec![
        System::Sluice,
        System::RabbitMq,
        System::SluiceRelaxed,
        System::JetStream,
    ];
    for rep in 1..=args.repetitions {
        for &system in &order {
            let n = args.messages;
            if matches!(system, System::Sluice | System::SluiceRelaxed) {
                revive_sluice(args, servers, system, rep, &work, results).await;
            }
            let group = match system {
                System::Sluice => servers.sluice.as_ref().map(|(s, _)| s.process.group()),
                System::SluiceRelaxed => servers.relaxed.as_ref().map(|(s, _)| s.process.group()),
                System::RabbitMq => servers.rabbit.as_ref().map(|(s, _)| s.process.group()),
                System::JetStream => servers.nats.as_ref().map(|(s, _)| s.process.group()),
            };
            let Some(server) = group else { continue };
            eprintln!("run {rep}: {}", system.label());
            let health = match system {
                System::Sluice => servers.sluice.as_ref().map(|(_, c)| c.clone()),
                System::SluiceRelaxed => servers.relaxed.as_ref().map(|(_, c)| c.clone()),
                _ => None,
            };
            let mut run = Run {
                results: &mut *results,
                system,
                rep,
                server,
                settings: &settings,
                health,
                dead: false,
            };
            match system {
                System::Sluice | System::SluiceRelaxed => {
                    let client = match system {
                        System::Sluice => servers.sluice.as_ref().map(|(_, c)| c),
                        _ => servers.relaxed.as_ref().map(|(_, c)| c),
                    };
                    if let Some(client) = client {
                        run_sluice(&mut run, client, &handlers, rep, n, &pace).await;
                    }
                }
                System::RabbitMq => {
                    if let Some((_, client)) = &servers.rabbit {
                        run_rabbit(&mut run, client, rep, n, &pace).await;
                    }
                }
                System::JetStream => {
                    if let Some((_, client)) = &servers.nats {
                        run_nats(&mut run, client, rep, n, &pace).await;
                    }
                }
            }
        }
        order.rotate_left(1);
    }
    for (label, server) in [
        ("fsync", servers.sluice.as_ref()),
        ("interval", servers.relaxed.as_ref()),
    ] {
        if let Some((server, _)) = server {
            eprintln!("Sluice ({label}) log: {}", server.log.display());
        }
    }
    Ok(())
}

/// Starts `sluice serve` for `system` (its durability) in `dir`, with a client.
async fn start_sluice(
    args: &Args,
    system: System,
    dir: &std::path::Path,
    work: &std::path::Path,
) -> anyhow::Result<(SluiceServer, SluiceClient)> {
    let durability = match system {
        System::SluiceRelaxed => format!("interval:{}", args.interval_ms),
        _ => "fsync".to_string(),
    };
    eprintln!("starting sluice serve --durability {durability}");
    let server = SluiceServer::start(
        &args.sluice,
        &durability,
        args.sluice_log.as_deref(),
        dir,
        work,
    )
    .await?;
    let client = SluiceClient::new(&server.url, &server.token)?;
    Ok((server, client))
}

/// A Sluice host that stopped answering (seen once: a stall inside sled
/// under load) would fail every later scenario by time-out. Record it, keep
/// its log and, if gdb is installed, its threads' stacks, and replace it with
/// a fresh host so the remaining repetitions still measure something.
async fn revive_sluice(
    args: &Args,
    servers: &mut Servers,
    system: System,
    rep: usize,
    work: &std::path::Path,
    results: &mut Results,
) {
    let slot = match system {
        System::SluiceRelaxed => &mut servers.relaxed,
        _ => &mut servers.sluice,
    };
    let Some((server, client)) = slot.as_ref() else {
        return;
    };
    if client.healthy().await {
        return;
    }
    let stacks = server.dir.join("stacks.txt");
    let dumped = servers::dump_stacks(server.process.group(), &stacks);
    let incident = format!(
        "before run {rep} the host no longer answered GET /health; its log is {}{}; replaced by a fresh host",
        server.log.display(),
        if dumped {
            format!(", its threads' stacks {}", stacks.display())
        } else {
            String::new()
        }
    );
    eprintln!("{}: {incident}", system.label());
    results.incident(system, incident);
    *slot = None;
    let name = match system {
        System::SluiceRelaxed => "sluice-relaxed",
        _ => "sluice",
    };
    match start_sluice(
        args,
        system,
        &work.join(format!("{name}-from-run{rep}")),
        work,
    )
    .await
    {
        Ok(fresh) => *slot = Some(fresh),
        Err(e) => {
            eprintln!("{}: could not start again: {e:#}", system.label());
            results.incident(system, format!("could not start again: {e:#}"));
        }
    }
}

/// One system's repetition: where its samples go and whose CPU is counted.
struct Run<'a> {
    results: &'a mut Results,
    system: System,
    rep: usize,
    /// The server's process group.
    server: u32,
    settings: &'a Settings,
    /// For Sluice: asked after a failure whether the host still answers.
    health: Option<SluiceClient>,
    /// Set once the host stopped answering: the rest of the repetition is skipped.
    dead: bool,
}

impl Run<'_> {
    /// Runs `scenario` under the overall time limit and records its sample
    /// (with the CPU the server and this benchmark used) or its error.
    async fn measure<F>(&mut self, scenario: Scenario, f: F) -> bool
    where
        F: std::future::Future<Output = anyhow::Result<Sample>>,
    {
        let label = scenario.label(self.settings.rate);
        let wanted = &self.settings.scenarios;
        if !wanted.is_empty() && !wanted.contains(&scenario) {
            return false;
        }
        if self.dead {
            let e = anyhow::anyhow!("skipped: the host stopped answering earlier in this run");
            eprintln!("  {label:<45} {e}");
            self.results.fail(self.system, scenario, self.rep, &e);
            return false;
        }
        let limit = self.settings.limit * 2;
        let (server_before, client_before) = (cpu::group(self.server), cpu::own());
        let outcome = tokio::time::timeout(limit, f)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no result within {limit:?}")));
        match outcome {
            Ok(mut sample) => {
                sample.rep = self.rep;
                sample.server_cpu = cpu::group(self.server)
                    .zip(server_before)
                    .map(|(after, before)| after.saturating_sub(before));
                sample.client_cpu = cpu::own()
                    .zip(client_before)
                    .map(|(after, before)| after.saturating_sub(before));
                eprintln!(
                    "  {label:<45} {:>8.0} msg/s{}",
                    sample.rate,
                    sample
                        .p99
                        .map(|p| format!("  p99 {:.2} ms", p.as_secs_f64() * 1e3))
                        .unwrap_or_default()
                );
                self.results.add(self.system, scenario, sample);
                true
            }
            Err(e) => {
                eprintln!("  {label:<45} FAILED: {e:#}");
                self.results.fail(self.system, scenario, self.rep, &e);
                if let Some(client) = &self.health {
                    self.dead = !client.healthy().await;
                }
                false
            }
        }
    }
}

/// The Wasm components of the Sluice scenarios.
struct Handlers<'a> {
    /// One message per invocation.
    single: &'a [u8],
    /// Many messages per invocation.
    batch: &'a [u8],
}

async fn run_sluice(
    run: &mut Run<'_>,
    client: &SluiceClient,
    handlers: &Handlers<'_>,
    rep: usize,
    n: usize,
    pace: &Pace,
) {
    let settings = run.settings;
    let queue = |what: &str| format!("bench-{rep}-{what}");
    let component = handlers.single;

    // Send, then drain the same queue.
    let q = queue("send");
    let sent = run
        .measure(Scenario::Send, async {
            client.create_queue(&q).await?;
            let (elapsed, latency) = client.send_many(&q, n, settings.concurrency).await?;
            Ok(Sample::new(n, elapsed, Some(&latency)))
        })
        .await;
    if sent {
        run.measure(Scenario::ReceiveComplete, async {
            let start = Instant::now();
            client
                .receive_complete(&q, n, settings, stats::ignore_bodies())
                .await?;
            Ok(Sample::new(n, start.elapsed(), None))
        })
        .await;
    }
    if !run.dead {
        cleanup(client.delete_queue(&q).await);
    }

    // Batch send, then let the handler drain that queue.
    let q = queue("batch");
    let sent = run
        .measure(Scenario::SendBatch, async {
            client.create_queue(&q).await?;
            let (elapsed, latency) = client.send_batches(&q, n).await?;
            Ok(Sample::new(n, elapsed, Some(&latency)))
        })
        .await;
    if sent {
        run.measure(Scenario::WasmDrain, async {
            client
                .wasm_drain(&format!("bench-drain-{rep}"), &q, n, component, settings)
                .await
        })
        .await;
    }
    if !run.dead {
        cleanup(client.delete_queue(&q).await);
    }

    // The same with a batch handler, on a queue filled the same way.
    let q = queue("batch-drain");
    let filled = async {
        client.create_queue(sluice::BATCH_SIZES).await?;
        client.create_queue(&q).await?;
        client.send_batches(&q, n).await
    }
    .await;
    match filled {
        Ok(_) => {
            run.measure(Scenario::WasmBatchDrain, async {
                client
                    .wasm_drain(
                        &format!("bench-batch-drain-{rep}"),
                        &q,
                        n,
                        handlers.batch,
                        settings,
                    )
                    .await
            })
            .await;
        }
        Err(e) => run
            .results
            .fail(run.system, Scenario::WasmBatchDrain, rep, &e),
    }
    if !run.dead {
        cleanup(client.delete_queue(&q).await);
    }

    let q = queue("pipeline");
    run.measure(Scenario::SendAndConsume, async {
        client.create_queue(&q).await?;
        let elapsed = client.send_and_consume(&q, n, settings).await?;
        Ok(Sample::new(n, elapsed, None))
    })
    .await;
    if !run.dead {
        cleanup(client.delete_queue(&q).await);
    }

    let q = queue("wasm");
    run.measure(Scenario::WasmPipeline, async {
        client.create_queue(&q).await?;
        client
            .wasm_pipeline(
                &format!("bench-wasm-{rep}"),
                &q,
                n,
                sluice::Handler::Single(component),
                settings,
            )
            .await
    })
    .await;
    if !run.dead {
        cleanup(client.delete_queue(&q).await);
    }

    let q = queue("batch-wasm");
    run.measure(Scenario::WasmBatchPipeline, async {
        client.create_queue(&q).await?;
        client
            .wasm_pipeline(
                &format!("bench-batch-wasm-{rep}"),
                &q,
                n,
                sluice::Handler::Batch(handlers.batch),
                settings,
            )
            .await
    })
    .await;
    if !run.dead {
        cleanup(client.delete_queue(&q).await);
        cleanup(client.delete_queue(sluice::BATCH_SIZES).await);
    }

    let q = queue("latency");
    run.measure(Scenario::Latency, async {
        client.create_queue(&q).await?;
        client.latency(&q, pace, settings).await
    })
    .await;
    if !run.dead {
        cleanup(client.delete_queue(&q).await);
    }
}

async fn run_rabbit(run: &mut Run<'_>, client: &rabbit::Rabbit, rep: usize, n: usize, pace: &Pace) {
    let settings = run.settings;
    let q = format!("bench-{rep}-send");
    let sent = run
        .measure(Scenario::Send, async {
            let (elapsed, latency) = client.send(&q, n, Schedule::Flat, settings).await?;
            Ok(Sample::new(n, elapsed, Some(&latency)))
        })
        .await;
    if sent {
        run.measure(Scenario::ReceiveComplete, async {
            let start = Instant::now();
            client
                .consume(&q, n, settings, stats::ignore_bodies())
                .await?;
            Ok(Sample::new(n, start.elapsed(), None))
        })
        .await;
    }
    cleanup(client.delete_queue(&q).await);

    let q = format!("bench-{rep}-pipeline");
    run.measure(Scenario::SendAndConsume, async {
        let elapsed = client.send_and_consume(&q, n, settings).await?;
        Ok(Sample::new(n, elapsed, None))
    })
    .await;
    cleanup(client.delete_queue(&q).await);

    let q = format!("bench-{rep}-latency");
    run.measure(Scenario::Latency, async {
        client.latency(&q, pace, settings).await
    })
    .await;
    cleanup(client.delete_queue(&q).await);
}

async fn run_nats(run: &mut Run<'_>, client: &nats::JetStream, rep: usize, n: usize, pace: &Pace) {
    let settings = run.settings;
    let names = nats::Names::new(&format!("{rep}-send"));
    let sent = run
        .measure(Scenario::Send, async {
            client.create_stream(&names).await?;
            let (elapsed, latency) = client.send(&names, n, Schedule::Flat, settings).await?;
            Ok(Sample::new(n, elapsed, Some(&latency)))
        })
        .await;
    if sent {
        run.measure(Scenario::ReceiveComplete, async {
            let start = Instant::now();
            client
                .consume(&names, n, settings, stats::ignore_bodies())
                .await?;
            Ok(Sample::new(n, start.elapsed(), None))
        })
        .await;
    }
    cleanup(client.delete_stream(&names).await);

    let names = nats::Names::new(&format!("{rep}-pipeline"));
    run.measure(Scenario::SendAndConsume, async {
        client.create_stream(&names).await?;
        let elapsed = client.send_and_consume(&names, n, settings).await?;
        Ok(Sample::new(n, elapsed, None))
    })
    .await;
    cleanup(client.delete_stream(&names).await);

    let names = nats::Names::new(&format!("{rep}-latency"));
    run.measure(Scenario::Latency, async {
        client.create_stream(&names).await?;
        client.latency(&names, pace, settings).await
    })
    .await;
    cleanup(client.delete_stream(&names).await);
}

/// Deleting a scenario's queue only saves disk; a failure is worth a line, not the run.
fn cleanup(outcome: anyhow::Result<()>) {
    if let Err(e) = outcome {
        eprintln!("  (cleanup: {e:#})");
    }
}
