//! Runtime overhead: what the host adds to a raw wasmtime call of the same
//! component, instantiation time, deploy → first invocation, and
//! invocations per second across concurrency.
//!
//! ```sh
//! cargo bench -p sluice-host --bench runtime            # prints a table
//! cargo bench -p sluice-host --bench runtime -- 5000    # iterations per round
//! ```
//!
//! The handler is `tests/guests/busy` with body `0` (completes at once), built
//! by `sluice build`'s library. Raw and host calls alternate in rounds on the
//! same engine (pooling allocator on), and the table shows the median round,
//! so the comparison is side by side on a shared, noisy machine.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_host::broker::{Broker, EntityPath, NewMessage, QueueProperties, ReceiveMode};
use sluice_host::build::{BuildOptions, build_component};
use sluice_host::capability::{HostContext, HostServices, Invocation};
use sluice_host::events::Events;
use sluice_host::functions::{FunctionLimits, Functions, Trigger};
use sluice_host::keyvalue::KeyValue;
use sluice_host::runtime::bindings::{HandlerPre, message_to_wit};
use sluice_host::runtime::{Input, Runtime};
use sluice_host::store::{Durability, Store};
use sluice_host::trace::{TraceParent, Traces};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What a raw call's store holds: WASI, granting nothing, as the host does.
struct RawState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn micros_per(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / n as f64
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let rounds = 7;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("target/bench/busy.wasm");
    let built = tokio::task::spawn_blocking({
        let guest = root.join("tests/guests/busy");
        let out = out.clone();
        move || {
            build_component(
                &guest,
                &BuildOptions {
                    release: true,
                    out: Some(out),
                },
            )
        }
    })
    .await??;
    let bytes = std::fs::read(&built.path)?;

    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), Durability::Fsync)?;
    let broker = Arc::new(Broker::open(store.clone())?);
    let events = Arc::new(Events::open(store.clone(), broker.clone())?);
    let services = HostServices {
        broker: broker.clone(),
        events,
        kv: Arc::new(KeyValue::new(store.clone())),
        traces: Arc::new(Traces::new(store.clone(), 0)),
    };
    let runtime = Arc::new(Runtime::new()?);
    let (pre, _) = runtime.compile(&bytes)?;

    broker
        .create_queue("bench", QueueProperties::default())
        .await?;
    broker
        .send(
            "bench",
            vec![NewMessage {
                body: b"0".to_vec(),
                ..NewMessage::default()
            }],
        )
        .await?;
    let message = broker
        .receive(
            &EntityPath::active("bench"),
            ReceiveMode::PeekLock,
            Duration::from_secs(5),
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("the bench message did not arrive"))?;
    let wit_message = message_to_wit(&message);
    let limits = FunctionLimits::default();

    // The raw baseline: the same engine and component, WASI linked, the
    // Sluice imports (unused by this handler) as traps.
    let engine = runtime.engine().clone();
    let mut linker: Linker<RawState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let component = wasmtime::component::Component::new(&engine, &bytes)?;
    stub_sluice_imports(&mut linker, &component)?;
    let raw_pre = HandlerPre::new(linker.instantiate_pre(&component)?)?;
    let raw_store = || {
        let mut store = wasmtime::Store::new(
            &engine,
            RawState {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        // The engine interrupts by epoch; a raw store needs a deadline too
        // (far away: the baseline has no deadline callback).
        store.set_epoch_deadline(1 << 40);
        store
    };

    let invocation = |n: usize| Invocation {
        function: "bench".into(),
        invocation_id: format!("{n}"),
        correlation_id: None,
        log_budget: limits.log_budget_bytes(),
        settings: Arc::default(),
        trace: TraceParent::new_root(),
    };

    let (mut raw_call, mut raw_inst, mut host_call) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..iterations {
            let mut store = raw_store();
            let handler = raw_pre.instantiate_async(&mut store).await?;
            handler
                .call_handle_message(&mut store, &wit_message)
                .await?;
        }
        raw_call.push(micros_per(started.elapsed(), iterations));

        let started = Instant::now();
        for _ in 0..iterations {
            let mut store = raw_store();
            raw_pre.instantiate_async(&mut store).await?;
        }
        raw_inst.push(micros_per(started.elapsed(), iterations));

        let started = Instant::now();
        for n in 0..iterations {
            let host = HostContext::new(invocation(n), services.clone());
            runtime
                .invoke(
                    &pre,
                    limits.invocation(),
                    host,
                    Input::Messages(std::slice::from_ref(&message)),
                )
                .await?;
        }
        host_call.push(micros_per(started.elapsed(), iterations));
    }
    let (raw, inst, host) = (median(raw_call), median(raw_inst), median(host_call));

    // Deploy → first invocation: cold (compiles) and warm (the artifact is cached).
    let functions = Functions::open(store.clone(), runtime.clone()).await?;
    let mut deploy_ms = Vec::new();
    for name in ["cold", "warm"] {
        let started = Instant::now();
        let deployed = functions
            .deploy(
                name,
                bytes.clone(),
                Trigger::Queue("bench".into()),
                limits,
                None,
            )
            .await?;
        let host = HostContext::new(invocation(0), services.clone());
        runtime
            .invoke(
                &deployed.handler,
                limits.invocation(),
                host,
                Input::Messages(std::slice::from_ref(&message)),
            )
            .await?;
        deploy_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }

    // Throughput across concurrency.
    let mut throughput = Vec::new();
    for concurrency in [1usize, 2, 4, 8, 16] {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (runtime, pre, services, message) = (
                runtime.clone(),
                pre.clone(),
                services.clone(),
                message.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut count = 0u64;
                while Instant::now() < deadline {
                    let host = HostContext::new(
                        Invocation {
                            function: "bench".into(),
                            invocation_id: String::new(),
                            correlation_id: None,
                            log_budget: limits.log_budget_bytes(),
                            settings: Arc::default(),
                            trace: TraceParent::new_root(),
                        },
                        services.clone(),
                    );
                    if runtime
                        .invoke(
                            &pre,
                            limits.invocation(),
                            host,
                            Input::Messages(std::slice::from_ref(&message)),
                        )
                        .await
                        .is_ok()
                    {
                        count += 1;
                    }
                }
                count
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await?;
        }
        throughput.push((concurrency, total as f64 / 2.0));
    }

    println!(
        "runtime benchmark: tests/guests/busy (body 0), {} bytes, {rounds} rounds x {iterations} calls, medians",
        bytes.len()
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| raw wasmtime: instantiate + call (pooling) | {raw:.1} µs |");
    println!("| raw wasmtime: instantiate only | {inst:.1} µs |");
    println!("| Sluice Runtime::invoke (same component) | {host:.1} µs |");
    println!(
        "| host overhead per invocation | {:.1} µs (target ≤ 20 µs) |",
        host - raw
    );
    println!(
        "| deploy → first invocation, cold compile | {:.1} ms |",
        deploy_ms[0]
    );
    println!(
        "| deploy → first invocation, warm cache | {:.1} ms (target < 1000 ms) |",
        deploy_ms[1]
    );
    for (concurrency, per_sec) in throughput {
        println!("| invocations/s at concurrency {concurrency} | {per_sec:.0} |");
    }
    Ok(())
}

/// Defines the component's `sluice:` imports as functions that fail (this
/// handler never calls them). Not `Linker::define_unknown_imports_as_traps`:
/// it matches names exactly, so it also stubs WASI interfaces imported at a
/// newer patch version (`wasi:io/error@0.2.12`) that the WASI linker serves
/// by semver, and their resources then no longer match.
fn stub_sluice_imports(
    linker: &mut Linker<RawState>,
    component: &wasmtime::component::Component,
) -> anyhow::Result<()> {
    use wasmtime::component::types::ComponentItem;
    let engine = linker.engine().clone();
    for (name, item) in component.component_type().imports(&engine) {
        if !name.starts_with("sluice:") {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            anyhow::bail!("the bench expects `{name}` to be an interface");
        };
        let mut stubs = linker.instance(name)?;
        for (export, item) in instance.exports(&engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    stubs.func_new(export, move |_, _, _, _| {
                        wasmtime::bail!("`{what}` is not linked in the raw baseline")
                    })?;
                }
                ComponentItem::Resource(_) => {
                    stubs.resource(
                        export,
                        wasmtime::component::ResourceType::host::<()>(),
                        |_, _| Ok(()),
                    )?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}
